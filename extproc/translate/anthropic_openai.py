"""Anthropic Messages client -> OpenAI chat completions provider, both ways.

Why: an application written against the Anthropic SDK can be pointed at any
OpenAI-compatible model (OpenAI, vLLM, a local server) by a manifest change.
The request is rebuilt as a chat completions body (system prompt first,
tool_use -> tool_calls, tool_result -> `role: tool` messages placed right
after the assistant turn, as OpenAI requires); the response is rebuilt as an
Anthropic message, or, for streams, as Anthropic's event sequence
(message_start, content blocks with text_delta / input_json_delta,
message_delta with stop_reason and usage, message_stop).

Streams always ask for `stream_options.include_usage`: the usage chunk is
consumed here (its numbers go into message_delta, never to the client as-is).
A stream that ends without finish_reason or `[DONE]` ends with an Anthropic
`error` event and no message_stop, so the SDK raises instead of returning a
truncated message as if it were complete.

Anthropic's input_tokens exclude cache reads; OpenAI's prompt_tokens include
them, so input_tokens = prompt_tokens - cached_tokens on the wire, while the
`Usage` for metrics keeps the total (DESIGN convention 5).
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.sse import SSEDecoder, SSEEvent
from extproc.translate.base import HeaderChanges, RequestContext, Translating, UpstreamRequest, encode, finalized
from extproc.usage import Usage, from_openai

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
STOP_REASONS |= {"tool_calls": "tool_use", "function_call": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
ERROR_TYPES |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}
ERROR_TYPES |= {503: "overloaded_error", 529: "overloaded_error"}  # other 5xx: api_error
# Anthropic request fields translated explicitly below.
_TRANSLATED = {"model", "max_tokens", "system", "messages", "tools", "tool_choice", "stop_sequences", "stream"}
_TRANSLATED |= {"temperature", "top_p", "metadata", "output_config", "output_format"}
# Anthropic-only fields with no chat completions equivalent: dropped, since a strict
# OpenAI server rejects unknown arguments. Anything else unknown passes through.
_DROPPED = {"top_k", "thinking", "service_tier", "container", "mcp_servers", "context_management"}
_DROPPED |= {"inference_geo", "cache_control", "diagnostics", "speed", "user_profile_id", "workspace_id"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
CUT_MESSAGE = "The provider's stream ended before the response was complete."


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _loads(data: bytes | str) -> Any:
    """Parsed JSON, or None when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


# --- request ---------------------------------------------------------------------------------


def translate_request(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic /v1/messages body as an OpenAI /v1/chat/completions body (pure)."""
    out: dict[str, Any] = {"model": model or body.get("model")}
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in _list(body.get("messages")):
        if isinstance(message, dict):
            messages.extend(_message(message))
    out["messages"] = messages
    if body.get("max_tokens") is not None:
        out["max_completion_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = list(stops)
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        out.update(_tool_choice(body.get("tool_choice")))
    schema = _dict(_dict(body.get("output_config")).get("format") or body.get("output_format")).get("schema")
    if isinstance(schema, dict):  # structured outputs; output_config.effort has no safe equivalent
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    if isinstance(_dict(body.get("metadata")).get("user_id"), str):
        out["user"] = body["metadata"]["user_id"]
    if body.get("stream") is True:  # include_usage always: the gateway counts tokens
        out |= {"stream": True, "stream_options": {"include_usage": True}}
    for key, value in body.items():
        if key not in _TRANSLATED and key not in _DROPPED and key not in out:
            out[key] = value
    return out


def _system_text(system: Any) -> str:
    """The system prompt: a string, or text blocks joined by newlines (cache_control has no equivalent)."""
    if isinstance(system, str):
        return system
    return "\n".join(_str(_dict(b).get("text")) for b in _list(system) if _str(_dict(b).get("text")))


def _message(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if not isinstance(content, list):
        return [{"role": role, "content": content}]
    if role == "assistant":
        return _assistant(content)
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in map(_dict, content):
        if block.get("type") == "tool_result":
            text, images = _tool_result(block.get("content"))
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts.extend(images)  # chat completions tool messages carry text only: images follow as user input
        elif (part := _user_part(block)) is not None:
            parts.append(part)
    out = tool_messages
    if parts:
        plain = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": role, "content": parts[0]["text"] if plain else parts})
    elif not tool_messages:
        out.append({"role": role, "content": ""})
    return out


def _user_part(block: dict[str, Any]) -> dict[str, Any] | None:
    """One user content block as a chat completions content part (None: no equivalent, dropped)."""
    kind = block.get("type")
    source = block.get("source")
    if kind == "text" and isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    if not isinstance(source, dict):
        return None
    if kind == "image":
        url = _source_url(source)
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    if kind == "document":
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
        if source.get("type") == "base64":
            name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
            return {"type": "file", "file": {"filename": name, "file_data": _source_url(source)}}
    return None  # thinking, file ids, URL documents, server tool results: nothing to send


def _source_url(source: dict[str, Any]) -> str | None:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    return (_str(source.get("url")) or None) if source.get("type") == "url" else None


def _tool_result(content: Any) -> tuple[str, list[dict[str, Any]]]:
    """(text for the tool message, image parts that cannot go in it)."""
    if isinstance(content, str):
        return content, []
    parts = [p for p in (_user_part(_dict(block)) for block in _list(content)) if p is not None]
    return "\n".join(p["text"] for p in parts if p["type"] == "text"), [p for p in parts if p["type"] != "text"]


def _assistant(content: list[Any]) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in map(_dict, content):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            function = {"name": block.get("name"), "arguments": encode(block.get("input") or {}).decode()}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        # thinking / redacted_thinking: provider-specific, meaningless to another model
    out: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts or not calls else None}
    if calls:
        out["tool_calls"] = calls
    return [out]


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in _list(tools):
        # Client tools have an input_schema; server tools (web_search_*, bash_*, ...) have no OpenAI equivalent.
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or "name" not in tool:
            continue
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    """auto/any/tool/none -> auto/required/{function}/none; disable_parallel_tool_use -> parallel_tool_calls."""
    choice = _dict(choice)
    out: dict[str, Any] = {}
    if choice.get("type") == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif _str(choice.get("type")) in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[choice["type"]]
    if isinstance(choice.get("disable_parallel_tool_use"), bool) and choice.get("type") != "none":
        out["parallel_tool_calls"] = not choice["disable_parallel_tool_use"]
    return out


# --- response: JSON and errors ---------------------------------------------------------------


def wire_usage(usage: Any) -> dict[str, int]:
    """OpenAI usage as Anthropic's: input_tokens exclude cache reads."""
    u = _dict(usage)
    cached = _int(_dict(u.get("prompt_tokens_details")).get("cached_tokens"))
    return {
        "input_tokens": max(_int(u.get("prompt_tokens")) - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _int(u.get("completion_tokens")),
    }


def _tool_input(arguments: Any) -> Any:
    """Tool call arguments (a JSON string) as the `input` object; unparseable text is kept, not lost."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    parsed = _loads(arguments)
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def translate_completion(doc: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion as an Anthropic message (the first choice: Anthropic has one)."""
    choice = _dict((_list(doc.get("choices")) or [None])[0])
    message = _dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some compatible servers answer with content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    legacy = message.get("function_call")
    if not isinstance(calls, list):
        calls = [{"id": "call_0", "function": legacy}] if isinstance(legacy, dict) else []
    for call in calls:
        function = _dict(_dict(call).get("function"))
        if function:
            arguments = _tool_input(function.get("arguments"))
            content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    finish = choice.get("finish_reason")
    return {
        "id": doc.get("id"),
        "type": "message",
        "role": "assistant",
        "model": doc.get("model"),
        "content": content,
        "stop_reason": STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn",
        "stop_sequence": None,
        "usage": wire_usage(doc.get("usage")),
    }


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 or status < 400 else "invalid_request_error")


def translate_error(status: int, body: bytes) -> bytes:
    """A provider error body (OpenAI's, or any text) in Anthropic's error schema, same status."""
    doc = _loads(body)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):  # Google-style `[{"error": ...}]`
        doc = doc[0]
    if isinstance(doc, dict) and doc.get("type") == "error" and isinstance(doc.get("error"), dict):
        return body  # already Anthropic's schema (an error the gateway itself answered)
    doc = _dict(doc)
    message = _str(_dict(doc.get("error")).get("message")) or _str(doc.get("error")) or _str(doc.get("message"))
    if not message:
        message = body.decode("utf-8", "replace").strip()[:1000] or f"The provider answered HTTP {status}."
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


# --- response: stream ------------------------------------------------------------------------


def _emit(out: list[bytes], kind: str, **fields: Any) -> None:
    """One Anthropic SSE event: `event: <type>` and the JSON with the same `type`."""
    out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n")


class StreamTranslator:
    """OpenAI chat.completion.chunk events -> Anthropic Messages stream events, incrementally.

    One block is open at a time, as on Anthropic's wire: text opens a text
    block; each tool call (by its OpenAI `index`) opens a tool_use block once
    its name is known, and its argument fragments become input_json_delta
    events. A fragment for an earlier call (providers that interleave calls)
    still goes to that call's block index, which is how the SDK reassembles.
    """

    def __init__(self) -> None:
        self.sse = SSEDecoder()
        self.started = False
        self.finished = False  # message_stop or error sent: nothing more to say
        self.model = ""
        self.usage_doc: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self._next_index = 0
        self._open: int | None = None  # index of the open content block
        self._text_open = False  # whether that block is a text block
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> content block index
        self._pending: dict[int, dict[str, str]] = {}  # tool calls whose name has not arrived yet

    def feed(self, chunk: bytes, end_of_stream: bool) -> bytes:
        out: list[bytes] = []
        for ev in self.sse.feed(chunk):
            self._on_event(ev, out)
        if end_of_stream:
            for ev in self.sse.feed(b"\n\n"):  # a last event the server did not terminate
                self._on_event(ev, out)
            if not self.finished and self.stop_reason is not None:
                self._end_message(out)  # finish_reason seen: complete even without `[DONE]`
            elif not self.finished:
                self._fail(out, "api_error", CUT_MESSAGE)
        return b"".join(out)

    def _on_event(self, ev: SSEEvent, out: list[bytes]) -> None:
        if self.finished or not ev.data:
            return
        if ev.data == b"[DONE]":
            self._end_message(out)
            return
        doc = _loads(ev.data)
        if not isinstance(doc, dict):
            return
        err = doc.get("error")
        if err is not None and not doc.get("choices"):  # an error event mid-stream (vLLM, proxies)
            code = _int(_dict(err).get("code"))
            self._fail(out, error_type(code) if code else "api_error", _str(_dict(err).get("message")) or CUT_MESSAGE)
            return
        if not self.started:
            self._start(doc, out)
        if isinstance(doc.get("usage"), dict):
            self.usage_doc = doc["usage"]
        choice = _dict((_list(doc.get("choices")) or [None])[0])
        if choice and self.stop_reason is None:
            delta = _dict(choice.get("delta"))
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                self._text(text, out)
            for position, call in enumerate(_list(delta.get("tool_calls"))):
                if isinstance(call, dict):
                    self._tool_call(call, position, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self.stop_reason = STOP_REASONS.get(finish, "end_turn")
                self._close_blocks(out)

    def _start(self, doc: dict[str, Any], out: list[bytes]) -> None:
        self.started = True
        self.model = _str(doc.get("model"))
        usage = {"input_tokens": wire_usage(doc.get("usage"))["input_tokens"], "output_tokens": 0}
        message: dict[str, Any] = {"id": _str(doc.get("id")) or "msg_llmgw", "type": "message", "role": "assistant"}
        message |= {"model": self.model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        _emit(out, "message_start", message=message)

    def _new_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        index = self._next_index
        self._next_index += 1
        _emit(out, "content_block_start", index=index, content_block=block)
        return index

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or not self._text_open:
            self._close_blocks(out)
            self._open, self._text_open = self._new_block({"type": "text", "text": ""}, out), True
        _emit(out, "content_block_delta", index=self._open, delta={"type": "text_delta", "text": text})

    def _tool_call(self, call: dict[str, Any], position: int, out: list[bytes]) -> None:
        tool = call["index"] if isinstance(call.get("index"), int) else position
        function = _dict(call.get("function"))
        fragment = _str(function.get("arguments"))
        block = self._tool_blocks.get(tool)
        if block is None:
            pending = self._pending.setdefault(tool, {"id": "", "name": "", "arguments": ""})
            pending["id"] = _str(call.get("id")) or pending["id"]
            pending["name"] = _str(function.get("name")) or pending["name"]
            pending["arguments"] += fragment
            if not pending["name"]:
                return  # an id or arguments before the name: wait for it
            del self._pending[tool]
            self._close_blocks(out)
            content_block = {"type": "tool_use", "id": pending["id"] or f"toolu_{tool}", "name": pending["name"]}
            block = self._new_block({**content_block, "input": {}}, out)
            self._tool_blocks[tool] = self._open = block
            fragment = pending["arguments"]
        if fragment:
            _emit(out, "content_block_delta", index=block, delta={"type": "input_json_delta", "partial_json": fragment})

    def _close_blocks(self, out: list[bytes]) -> None:
        if self._open is not None:
            _emit(out, "content_block_stop", index=self._open)
        self._open, self._text_open = None, False

    def _end_message(self, out: list[bytes]) -> None:
        """message_delta (stop reason, usage) then message_stop; after finish_reason, `[DONE]` or the end."""
        if not self.started:
            self._start({}, out)
        self._close_blocks(out)
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        _emit(out, "message_delta", delta=delta, usage=wire_usage(self.usage_doc))
        _emit(out, "message_stop")
        self.finished = True

    def _fail(self, out: list[bytes], kind: str, message: str) -> None:
        _emit(out, "error", error={"type": kind, "message": message})
        self.finished = True


class MessagesFromOpenAI:
    """Per-request response state: an Anthropic message, stream or error from an OpenAI response."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.response_model = ""
        self.status = 0
        self._stream: StreamTranslator | None = None
        self._buffer = b""

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status = status
        changes = HeaderChanges(remove=["content-length"])  # the body is rewritten
        if 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
            self._stream = StreamTranslator()
            changes.set["content-type"] = "text/event-stream; charset=utf-8"
        else:
            changes.set["content-type"] = "application/json"
        return changes

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._stream is not None:
            out = self._stream.feed(chunk, end_of_stream)
            self.response_model = self._stream.model
            if self._stream.usage_doc is not None:
                self.usage = from_openai(self._stream.usage_doc)
            return out
        self._buffer += chunk
        if not end_of_stream:
            return b""
        body, self._buffer = self._buffer, b""
        if not 200 <= self.status < 300:
            return translate_error(self.status, body)
        doc = _loads(body)
        if not isinstance(doc, dict):
            return body  # not a chat completion: nothing to translate, the client sees what came
        if isinstance(doc.get("model"), str):
            self.response_model = doc["model"]
        self.usage = from_openai(doc.get("usage"))
        return orjson.dumps(translate_completion(doc))


class AnthropicOpenAIPair(Translating):
    client_api = "anthropic"
    provider_api = "openai"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        # The provider module builds the path of its chat completions API (OpenAI, Azure deployments, ...).
        out = finalized(translate_request(body, model=ctx.model), ctx)
        return UpstreamRequest(body=encode(out), op="chat_completions")

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> MessagesFromOpenAI:
        return MessagesFromOpenAI()


PAIR = AnthropicOpenAIPair()
