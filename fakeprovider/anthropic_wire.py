"""Anthropic Messages wire format for the fake provider: validation, replies, bodies, SSE events, errors.

Pure functions from the parsed request to bytes, so the shapes can be checked
without a server. The shapes follow Anthropic's API reference (Messages,
streaming, errors); Vertex AI's Claude (`rawPredict` / `streamRawPredict`)
takes the same body without `model` and with `anthropic_version`.

Deterministic rules, so tests can assert exact values:
- reply text: `Hello from NAME: <text of the last user message>` (or the
  behaviour's `response_text`); if that message holds only tool results, their text;
- a tool call: when the request has tools and either forces one (`tool_choice`
  `any` / `tool`) or the last user text says "weather" (and it is not already a
  tool result): the named (else the first) tool with input `{"city": "Paris"}`;
  with `auto` the reply text comes first, as Claude often does;
- thinking (when `thinking.type` is `enabled`): a thinking block `Thinking about: <text>`;
- tokens are whitespace words: input over system + messages (min 1), output over
  the text, thinking and tool input; `cache_read_input_tokens` is the system
  prompt's words when a system block carries `cache_control` (a cache hit), and
  `input_tokens` is the rest, as Anthropic reports them (input excludes cache reads);
- `stop_sequences` and `max_tokens` (in words) cut the text as Anthropic would.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from fakeprovider.openai_wire import count_words, reply_text, split_text

VERTEX_VERSION = "vertex-2023-10-16"
TOOL_INPUT: dict[str, Any] = {"city": "Paris"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "output_config", "anthropic_version",
}  # fmt: skip
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_WORD_RE = re.compile(r"\s*\S+")


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def error_type_for_status(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(*, status: int, message: str) -> bytes:
    error = {"type": error_type_for_status(status), "message": message}
    return orjson.dumps({"type": "error", "error": error, "request_id": new_id("req_")})


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# --- validation ------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(data: Any, *, vertex: bool) -> str | None:
    """Anthropic's 400 message for this body, or None when it is acceptable."""
    if not isinstance(data, dict):
        return "There was an error parsing the body of your request: it must be a JSON object"
    # Vertex names the model in the URL and wants the version in the body, not a header
    allowed = FIELDS - ({"model"} if vertex else {"anthropic_version"})
    for name in data:
        if name not in allowed:
            return f"{name}: Extra inputs are not permitted"
    if vertex and data.get("anthropic_version") != VERTEX_VERSION:
        return f"anthropic_version: must be {VERTEX_VERSION!r}"
    if not vertex and (not isinstance(data.get("model"), str) or not data["model"]):
        return "model: Field required"
    if not _is_int(data.get("max_tokens")) or data["max_tokens"] < 1:
        return "max_tokens: Field required (an integer >= 1)"
    temperature = data.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        return "temperature: Input should be less than or equal to 1"
    return _validate_system(data.get("system")) or _validate_messages(data.get("messages")) or _validate_tools(data)


def _validate_system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) and b["text"] for b in system
    ):
        return None
    return "system: Input should be a valid string or a list of non-empty text blocks"


def _validate_block(block: Any, where: str) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return f"{where}: Input should be a content block object with a `type`"
    btype = block["type"]
    if btype == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        return f"{where}: text content blocks must be non-empty"
    if btype in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict):
            return f"{where}.source: Field required"
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return None
        ok_media = IMAGE_TYPES if btype == "image" else ("application/pdf",)
        if source.get("type") != "base64" or source.get("media_type") not in ok_media:
            return (
                f"{where}.source: Input should be a base64 source with media_type in {list(ok_media)} or a url source"
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            return f"{where}.source.data: Field required"
        return None
    if btype == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("input"), dict)):
        return f"{where}: tool_use blocks need an `id` and an object `input`"
    if btype == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return f"{where}.tool_use_id: Field required"
    if btype not in ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"):
        return f"{where}: Input tag {btype!r} found using 'type' does not match any of the expected tags"
    return None


def _validate_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    pending: list[str] = []  # tool_use ids the next message must answer
    previous_role = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        role, content = msg["role"], msg.get("content")
        if role == previous_role:
            return (
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        previous_role = role
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
            if not content and i != len(messages) - 1:
                return f"messages.{i}: all messages must have non-empty content"
        elif isinstance(content, list) and content:
            blocks = content
        else:
            return f"messages.{i}: all messages must have non-empty content"
        for j, block in enumerate(blocks):
            if problem := _validate_block(block, f"messages.{i}.content.{j}"):
                return problem
        answered = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        for j, tool_use_id in enumerate(answered):
            if tool_use_id not in pending:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )
        missing = [t for t in pending if t not in answered]
        if missing:
            return (
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"] if role == "assistant" else []
    return None


def _validate_tools(data: dict[str, Any]) -> str | None:
    tools = data.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
            if not isinstance(tool.get("input_schema"), dict):
                return f"tools.{i}.input_schema: Field required"
            names.append(tool["name"])
    choice = data.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        if not names:
            return "tool_choice: may only be specified while providing tools"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: Tool {choice.get('name')!r} not found in tools"
    thinking = data.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if data["max_tokens"] <= budget:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
        if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    return None


# --- the reply -------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Text of a message content or tool_result content, space-joined."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.append(_text_of(block.get("content")))
    return " ".join(t for t in texts if t)


@dataclass
class Reply:
    text: str
    thinking: str | None = None
    tool: dict[str, Any] | None = None  # {"id", "name", "input"}
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


def plan_reply(data: dict[str, Any], *, name: str, response_text: str | None) -> Reply:
    """What the fake answers to a valid request (see the module docstring for the rules)."""
    messages = data["messages"]
    last_user = next((m for m in reversed(messages) if m["role"] == "user"), {"content": ""})
    prompt = _text_of(last_user["content"])
    has_tool_result = isinstance(last_user["content"], list) and any(
        b.get("type") == "tool_result" for b in last_user["content"]
    )
    text = response_text if response_text is not None else reply_text(name=name, prompt=prompt)
    tools = data.get("tools") or []
    choice = data.get("tool_choice") or {"type": "auto"}
    forced = choice["type"] in ("any", "tool")
    reply = Reply(text=text)
    if tools and choice["type"] != "none" and (forced or ("weather" in prompt.lower() and not has_tool_result)):
        tool_name = choice["name"] if choice["type"] == "tool" else tools[0]["name"]
        reply.tool = {"id": new_id("toolu_"), "name": tool_name, "input": dict(TOOL_INPUT)}
        reply.stop_reason = "tool_use"
        if forced:
            reply.text = ""
    thinking = data.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        reply.thinking = f"Thinking about: {prompt}"
    if reply.tool is None:
        for stop in data.get("stop_sequences") or []:
            if isinstance(stop, str) and stop and stop in reply.text:
                reply.text = reply.text[: reply.text.index(stop)]
                reply.stop_reason, reply.stop_sequence = "stop_sequence", stop
                break
        words = _WORD_RE.findall(reply.text)
        if len(words) > data["max_tokens"]:
            reply.text = "".join(words[: data["max_tokens"]])
            reply.stop_reason, reply.stop_sequence = "max_tokens", None
    reply.usage = _usage(data, reply)
    return reply


def _usage(data: dict[str, Any], reply: Reply) -> dict[str, int]:
    system = data.get("system")
    system_words = count_words(system if isinstance(system, str) else _text_of(system))
    cached = isinstance(system, list) and any("cache_control" in b for b in system)
    message_words = sum(count_words(_text_of(m["content"])) for m in data["messages"])
    total = max(1, system_words + message_words)
    cache_read = system_words if cached else 0
    output = count_words(reply.text) + count_words(reply.thinking or "")
    if reply.tool is not None:
        output += count_words(orjson.dumps(reply.tool["input"], option=orjson.OPT_INDENT_2).decode())
    return {
        "input_tokens": total - cache_read,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
    }


def _content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": "fake-signature"})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    if reply.tool is not None:
        blocks.append({"type": "tool_use", **reply.tool})
    return blocks


def message_body(reply: Reply, *, model: str, message_id: str) -> bytes:
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _content(reply),
            "stop_reason": reply.stop_reason,
            "stop_sequence": reply.stop_sequence,
            "usage": reply.usage,
        }
    )


def _json_fragments(value: dict[str, Any]) -> list[str]:
    """The tool input as Anthropic streams it: an empty first delta, then pieces cut mid-token."""
    text = orjson.dumps(value).decode().replace(":", ": ").replace(",", ", ")
    cuts = sorted({len(text) * k // 4 + 1 for k in range(1, 4)})
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return ["", *[p for p in pieces if p]]


def stream_events(reply: Reply, *, model: str, message_id: str, chunks: int) -> list[bytes]:
    """The full event sequence of a streamed message, `message_start` to `message_stop`."""
    start_usage = {**reply.usage, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage,
    }  # fmt: skip
    events = [sse("message_start", {"type": "message_start", "message": message})]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(
            sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        )
        if index == 0:
            events.append(sse("ping", {"type": "ping"}))
        for delta in deltas:
            events.append(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if reply.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split_text(reply.thinking, chunks)]
        block(
            {"type": "thinking", "thinking": "", "signature": ""},
            [*deltas, {"type": "signature_delta", "signature": "fake-signature"}],
        )
    if reply.text:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in split_text(reply.text, chunks)])
    if reply.tool is not None:
        start = {"type": "tool_use", "id": reply.tool["id"], "name": reply.tool["name"], "input": {}}
        block(start, [{"type": "input_json_delta", "partial_json": p} for p in _json_fragments(reply.tool["input"])])
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    events.append(
        sse(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": reply.usage["output_tokens"]}},
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events
