"""Request validation: a client's mistake is a 400 in its own schema, not a 5xx, a hang or a traceback.

Two layers, both pure, both raising `TranslationError` (answered as a 400 in
the client's schema by the stage that called them):

- `check_routing_fields`, in the router stage for every route: the fields the
  gateway itself acts on. `model` is copied into the `x-gateway-model-name`
  header (and into provider paths, metric labels and the access log), so it
  must be a valid header value of bounded size; `stream` decides how the
  response is handled, so it must be a boolean; `stream_options` is patched
  (`include_usage`), so it must be an object.
- `check_translated`, in the attempt stage when the request is rebuilt for
  another API (OpenAI -> Anthropic / Gemini / Bedrock, Anthropic -> OpenAI):
  the shapes and types the translation reads. A translator would otherwise
  drop a malformed value silently (`"temperature": "hot"` gone, a message with
  `"content": {}` skipped) or crash on it; the provider on the other side never
  sees what the client wrote, so only the gateway can say what is wrong.

Same-schema routes (OpenAI -> OpenAI-compatible, Anthropic -> Anthropic) get
the first layer only: everything else passes through for the provider to judge
(DESIGN convention 4), including fields it does not know. `null` always means
"not set". The decisions per field are in docs/validation.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from extproc.translate.base import TranslationError

# Real model ids (ARNs, Vertex resource names, fine-tune ids) are far shorter; the bound keeps
# the routing header, the provider path and the metric label far below Envoy's 60 KiB header limit.
MAX_MODEL_BYTES = 1024
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
ANTHROPIC_ROLES = ("user", "assistant")
TOOL_CHOICES = ("none", "auto", "required")
# Envoy refuses a header mutation with CR, LF, NUL or DEL; no model name has any control character.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _kind(value: Any) -> str:
    """How a JSON value is named in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: str) -> str:
    """A client's string quoted in a message, cut short: an error must not echo a megabyte."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _fail(where: str, expected: str, value: Any) -> TranslationError:
    got = _kind(value)
    if isinstance(value, list) and not value:
        got = "an empty array"
    elif isinstance(value, list) and expected.endswith("array of strings"):
        got = "an array holding " + _kind(next((v for v in value if not isinstance(v, str)), None))
    return TranslationError(f"`{where}` must be {expected}; got {got}.", code="invalid_type", param=where)


# --- field types ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "integer": ("an integer", _is_int),
    "number": ("a number", _is_number),
    "boolean": ("a boolean (true or false)", lambda v: isinstance(v, bool)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("an array", lambda v: isinstance(v, list)),
    "string_list": ("an array of strings", _is_str_list),
    "stop": ("a string or an array of strings", lambda v: isinstance(v, str) or _is_str_list(v)),
}


def _check_fields(body: dict[str, Any], fields: dict[str, str], prefix: str = "") -> None:
    for name, type_name in fields.items():
        value = body.get(name)
        if value is None:
            continue
        expected, ok = _TYPES[type_name]
        if not ok(value):
            raise _fail(prefix + name, expected, value)


# --- every route: what the gateway itself acts on ----------------------------------------


def model_problem(model: str) -> str | None:
    """Why `model` cannot be copied into a header (None: it can)."""
    size = len(model) if model.isascii() else len(model.encode())
    if size > MAX_MODEL_BYTES:
        return f"`model` is {size} bytes long; the gateway accepts model names of at most {MAX_MODEL_BYTES} bytes."
    if _CONTROL.search(model) is not None:
        return "`model` must not contain control characters (CR, LF, NUL, DEL, ...)."
    return None


def check_routing_fields(body: dict[str, Any], *, streams: bool, stream_usage_option: bool) -> None:
    """`model`, `stream` and `stream_options`, on every route of an operation the gateway knows."""
    model = body.get("model")
    if isinstance(model, str):
        problem = model_problem(model)
        if problem is not None:
            raise TranslationError(problem, code="invalid_model", param="model")
    if streams:
        _check_fields(body, {"stream": "boolean"})
    if stream_usage_option:
        _check_fields(body, {"stream_options": "object"})


# --- translated routes: OpenAI client ------------------------------------------------------

OPENAI_CHAT_FIELDS = {
    "max_tokens": "integer",
    "max_completion_tokens": "integer",
    "n": "integer",
    "seed": "integer",
    "top_k": "integer",
    "top_logprobs": "integer",
    "temperature": "number",
    "top_p": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stop": "stop",
    "user": "string",
    "reasoning_effort": "string",
    "parallel_tool_calls": "boolean",
    "logprobs": "boolean",
    "response_format": "object",
    "tools": "array",
    "metadata": "object",
}


def _openai_parts(content: list[Any], where: str) -> None:
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _fail(at, "a content part object", part)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise _fail(f"{at}.type", "a string", kind)
        if kind in ("text", "refusal") and not isinstance(part.get(kind), str):
            raise _fail(f"{at}.{kind}", "a string", part.get(kind))
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _fail(f"{at}.image_url.url", "a string", url)
        if kind in ("file", "input_audio") and not isinstance(part.get(kind), dict):
            raise _fail(f"{at}.{kind}", "an object", part.get(kind))


def _openai_tool_calls(calls: Any, where: str) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise _fail(where, "an array", calls)
    for k, call in enumerate(calls):
        at = f"{where}[{k}]"
        if not isinstance(call, dict):
            raise _fail(at, "an object", call)
        _check_fields(call, {"id": "string"}, prefix=at + ".")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _fail(f"{at}.function", "an object", function)
        if not isinstance(function.get("name"), str):
            raise _fail(f"{at}.function.name", "a string", function.get("name"))
        _check_fields(function, {"arguments": "string"}, prefix=f"{at}.function.")


def _openai_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "a non-empty array of messages", messages)
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(where, "an object", message)
        role = message.get("role")
        if not isinstance(role, str):
            raise _fail(f"{where}.role", "a string", role)
        if role not in OPENAI_ROLES:
            raise TranslationError(
                f"`{where}.role` is {_show(role)}; it must be one of {', '.join(OPENAI_ROLES)}.",
                code="invalid_role",
                param=f"{where}.role",
            )
        content = message.get("content")
        if content is None and role not in ("assistant", "function"):
            raise _fail(f"{where}.content", "a string or an array of content parts", content)
        if content is not None and not isinstance(content, str | list):
            raise _fail(f"{where}.content", "a string or an array of content parts", content)
        if isinstance(content, list):
            _openai_parts(content, f"{where}.content")
        _check_fields(message, {"name": "string"}, prefix=where + ".")
        if role == "assistant":
            _openai_tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"{where}.tool_call_id", "a string", message.get("tool_call_id"))


def _openai_tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(body.get("tools") or []):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _fail(where, "an object", tool)
        if tool.get("type") != "function" and ("type" in tool or "function" not in tool):
            continue  # another kind of tool (or a provider-native one): the pair decides
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _fail(f"{where}.function", "an object", function)
        if not isinstance(function.get("name"), str):
            raise _fail(f"{where}.function.name", "a string", function.get("name"))
        _check_fields(function, {"description": "string", "parameters": "object"}, prefix=f"{where}.function.")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise TranslationError(
                f"`tool_choice` is {_show(choice)}; it must be one of {', '.join(TOOL_CHOICES)} or an object.",
                code="invalid_value",
                param="tool_choice",
            )
        return
    if not isinstance(choice, dict):
        raise _fail("tool_choice", "a string or an object", choice)
    function = choice.get("function")
    if function is None and choice.get("type") != "function":
        return  # allowed_tools, custom, ...: the pair decides
    if not isinstance(function, dict):
        raise _fail("tool_choice.function", "an object", function)
    if not isinstance(function.get("name"), str):
        raise _fail("tool_choice.function.name", "a string", function.get("name"))


def _openai_chat(body: dict[str, Any]) -> None:
    _check_fields(body, OPENAI_CHAT_FIELDS)
    _openai_messages(body.get("messages"))
    _openai_tools(body)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and not isinstance(fmt.get("type"), str):
        raise _fail("response_format.type", "a string", fmt.get("type"))


def _openai_completions(body: dict[str, Any]) -> None:
    _check_fields(body, {**OPENAI_CHAT_FIELDS, "prompt": "stop"})


def _openai_embeddings(body: dict[str, Any]) -> None:
    _check_fields(body, {"dimensions": "integer", "encoding_format": "string", "user": "string"})
    value = body.get("input")
    if isinstance(value, str):
        return
    if isinstance(value, list) and value and all(_is_int(v) or isinstance(v, list) for v in value):
        raise TranslationError(
            "This provider embeds text: send `input` as a string or an array of strings, not token ids.",
            code="unsupported_input",
            param="input",
        )
    if not isinstance(value, list) or not value or not _is_str_list(value):
        raise _fail("input", "a string or a non-empty array of strings", value)


# --- translated routes: Anthropic client ---------------------------------------------------

ANTHROPIC_FIELDS = {
    "max_tokens": "integer",
    "temperature": "number",
    "top_p": "number",
    "top_k": "integer",
    "stop_sequences": "string_list",
    "metadata": "object",
    "tools": "array",
    "tool_choice": "object",
    "thinking": "object",
    "output_config": "object",
    "output_format": "object",
}


def _anthropic_blocks(content: list[Any], where: str) -> None:
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(block, dict):
            raise _fail(at, "a content block object", block)
        kind = block.get("type")
        if not isinstance(kind, str):
            raise _fail(f"{at}.type", "a string", kind)
        if kind == "text" and not isinstance(block.get("text"), str):
            raise _fail(f"{at}.text", "a string", block.get("text"))
        elif kind == "tool_use":
            _check_fields(block, {"id": "string", "input": "object"}, prefix=at + ".")
            if not isinstance(block.get("name"), str):
                raise _fail(f"{at}.name", "a string", block.get("name"))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _fail(f"{at}.tool_use_id", "a string", block.get("tool_use_id"))
            inner = block.get("content")
            if inner is not None and not isinstance(inner, str | list):
                raise _fail(f"{at}.content", "a string or an array of content blocks", inner)
            if isinstance(inner, list):
                _anthropic_blocks(inner, f"{at}.content")
        elif kind in ("image", "document") and not isinstance(block.get("source"), dict):
            raise _fail(f"{at}.source", "an object", block.get("source"))


def _anthropic_messages(body: dict[str, Any]) -> None:
    _check_fields(body, ANTHROPIC_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "a non-empty array of messages", messages)
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(where, "an object", message)
        role = message.get("role")
        if role not in ANTHROPIC_ROLES:
            raise TranslationError(
                f"`{where}.role` must be 'user' or 'assistant' (the system prompt is the top-level `system`); "
                f"got {_show(role) if isinstance(role, str) else _kind(role)}.",
                code="invalid_role",
                param=f"{where}.role",
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise _fail(f"{where}.content", "a string or an array of content blocks", content)
        if isinstance(content, list):
            _anthropic_blocks(content, f"{where}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _fail("system", "a string or an array of text blocks", system)
    for j, block in enumerate(system if isinstance(system, list) else []):
        if not isinstance(block, dict):
            raise _fail(f"system[{j}]", "a text block object", block)
        if not isinstance(block.get("text"), str):
            raise _fail(f"system[{j}].text", "a string", block.get("text"))
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict):
            raise _fail(f"tools[{i}]", "an object", tool)
        if "name" in tool and not isinstance(tool["name"], str):
            raise _fail(f"tools[{i}].name", "a string", tool["name"])
        _check_fields(tool, {"description": "string", "input_schema": "object"}, prefix=f"tools[{i}].")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and not isinstance(choice.get("type"), str):
        raise _fail("tool_choice.type", "a string", choice.get("type"))


_TRANSLATED: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("openai", "chat_completions"): _openai_chat,
    ("openai", "completions"): _openai_completions,
    ("openai", "embeddings"): _openai_embeddings,
    ("anthropic", "messages"): _anthropic_messages,
}


def check_translated(body: dict[str, Any], *, client_api: str, op: str) -> None:
    """The shapes and types a translation to another API reads; raises `TranslationError`."""
    check = _TRANSLATED.get((client_api, op))
    if check is not None:
        check(body)
