"""Bedrock Converse / ConverseStream responses and Bedrock errors -> the OpenAI chat completions schema.

The response half of the `openai_bedrock` pair (the request half is there),
kept apart so each stays small. JSON: text blocks -> `content`, `toolUse` ->
`tool_calls` (arguments re-serialized as a JSON string), `reasoningContent`
-> `reasoning_content` (the field agentgateway and DeepSeek-style clients
read), stopReason -> finish_reason. Streams: AWS event stream frames
(`extproc.eventstream`) -> OpenAI `chat.completion.chunk` SSE events: a role
chunk on messageStart, content / tool call / reasoning deltas (a toolUse
block gets the next OpenAI tool call index; its input arrives as JSON string
fragments that are passed on as argument fragments), the finish_reason chunk
on messageStop, the usage chunk (only if the client asked) and `[DONE]` on
metadata. An exception frame, a corrupt frame, or a stream that ends before
messageStop ends with an OpenAI error event and no `[DONE]`: the openai SDK
raises `APIError` instead of returning a silently truncated answer.

Usage is normalized once: Bedrock's inputTokens exclude cache reads and
writes, `Usage.input` and OpenAI's prompt_tokens are the total.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc import errors
from extproc.eventstream import EventStreamDecoder, Message
from extproc.providers import bedrock
from extproc.translate import stamps
from extproc.translate.base import HeaderChanges, RequestContext
from extproc.usage import Usage, total_input

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Exception types (lowerCamel in stream frames, UpperCamel in x-amzn-ErrorType) -> HTTP status.
EXCEPTION_STATUS = {
    "validationexception": 400,
    "accessdeniedexception": 403,
    "resourcenotfoundexception": 404,
    "modeltimeoutexception": 408,
    "modelerrorexception": 424,
    "modelstreamerrorexception": 424,
    "throttlingexception": 429,
    "servicequotaexceededexception": 429,
    "internalserverexception": 500,
    "serviceunavailableexception": 503,
}


# --- JSON and errors ------------------------------------------------------------------


def converse_usage(raw: Any) -> tuple[Usage | None, dict[str, Any] | None]:
    """(normalized Usage, OpenAI `usage`) from Bedrock's usage (inputTokens exclude cache)."""
    if not isinstance(raw, dict):
        return None, None

    def num(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    read, write, output = num("cacheReadInputTokens"), num("cacheWriteInputTokens"), num("outputTokens")
    base = num("inputTokens")
    total = total_input(base, read, write, includes_cached=bedrock.input_includes_cached)
    usage = Usage(input=total, output=output, cache_read=read, cache_write=write)
    openai = {
        "prompt_tokens": total or 0,
        "completion_tokens": output or 0,
        "total_tokens": (total or 0) + (output or 0),
        "prompt_tokens_details": {"cached_tokens": read or 0},
    }
    return usage, openai


def error_type(headers: dict[str, str], doc: Any) -> str:
    """The AWS error type from `x-amzn-errortype` (`Name:namespace`) or the body's `__type`."""
    raw = headers.get("x-amzn-errortype") or (doc.get("__type") if isinstance(doc, dict) else "") or ""
    return str(raw).split(":", 1)[0].rsplit("#", 1)[-1]


def openai_error(*, status: int, headers: dict[str, str], body: bytes) -> bytes:
    """A Bedrock error response as an OpenAI error body (same status; the AWS type is the code).

    A body already in OpenAI's schema is the gateway's own answer (an attempt
    stage error, an Envoy local reply) and passes unchanged.
    """
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    message = ""
    if isinstance(doc, dict):
        if isinstance(doc.get("error"), dict) and "message" in doc["error"]:
            return body  # already the OpenAI schema: a gateway or Envoy reply, not Bedrock's
        message = str(doc.get("message") or doc.get("Message") or "")
    if not message:
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"Bedrock answered HTTP {status}" + (f": {snippet}" if snippet else ".")
    return errors.error_body(status=status, message=message, code=error_type(headers, doc) or "bedrock_error")


def _block_index(doc: dict[str, Any]) -> int:
    value = doc.get("contentBlockIndex")
    return value if isinstance(value, int) else 0


def _stream_error(message: str, code: str, status: int) -> bytes:
    return b"data: " + errors.error_body(status=status, message=message, code=code) + b"\n\n"


class BedrockChatResponse:
    """Per-request response state: JSON (buffered) or event stream -> OpenAI SSE (streamed)."""

    def __init__(self, ctx: RequestContext, *, client_wants_usage: bool):
        self.usage: Usage | None = None
        self.response_model = ctx.model
        self.client_wants_usage = client_wants_usage
        self.status = 0
        self.id = ""
        self.created = int(stamps.now())
        self.headers: dict[str, str] = {}
        self._decoder: EventStreamDecoder | None = None
        self._body = bytearray()
        self._tools: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool call index
        self._stopped = False
        self._done = False

    @property
    def streaming(self) -> bool:
        return self._decoder is not None

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status, self.headers = status, headers
        request_id = headers.get("x-amzn-requestid")
        self.id = "chatcmpl-" + request_id if request_id else stamps.new_id("chatcmpl-")
        if 200 <= status < 300 and "amazon.eventstream" in headers.get("content-type", ""):
            self._decoder = EventStreamDecoder()
            return HeaderChanges(set={"content-type": "text/event-stream"}, remove=["content-length"])
        return HeaderChanges(set={"content-type": "application/json"}, remove=["content-length"])

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._decoder is None:
            self._body += chunk  # buffered mode delivers the whole body at once; be safe if it does not
            if not end_of_stream:
                return b""
            if not 200 <= self.status < 300:
                return openai_error(status=self.status, headers=self.headers, body=bytes(self._body))
            return self._completion(bytes(self._body))
        return self._on_stream(chunk, end_of_stream)

    # --- JSON ---------------------------------------------------------------------------

    def _completion(self, body: bytes) -> bytes:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        message = doc.get("output", {}).get("message") if isinstance(doc, dict) else None
        if not isinstance(message, dict):
            return errors.error_body(
                status=502, message="Bedrock answered without an output message.", code="bad_gateway"
            )
        texts, reasoning, calls = [], [], []
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                arguments = orjson.dumps(use.get("input") or {}).decode()
                function = {"name": use.get("name"), "arguments": arguments}
                calls.append({"id": use.get("toolUseId"), "type": "function", "function": function})
            elif isinstance(block.get("reasoningContent"), dict):
                text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
                if isinstance(text, str):
                    reasoning.append(text)
        out_message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        out_message["refusal"] = None
        if reasoning:
            out_message["reasoning_content"] = "".join(reasoning)
        if calls:
            out_message["tool_calls"] = calls
        self.usage, usage = converse_usage(doc.get("usage"))
        finish = STOP_REASONS.get(str(doc.get("stopReason")), "stop")
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.response_model,
            "choices": [{"index": 0, "message": out_message, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = usage
        return orjson.dumps(out)

    # --- stream -------------------------------------------------------------------------

    def _on_stream(self, chunk: bytes, end_of_stream: bool) -> bytes:
        assert self._decoder is not None
        if self._done:
            return b""
        out: list[bytes] = []
        for message in self._decoder.feed(chunk):
            out.append(self._event(message))
            if self._done:
                return b"".join(out)
        if self._decoder.error is not None:
            self._done = True
            out.append(_stream_error(f"The provider's stream was corrupt: {self._decoder.error}.", "bad_stream", 502))
            return b"".join(out)
        if end_of_stream:
            self._done = True
            if self._stopped:  # metadata (usage) missing, but the message is complete
                out.append(b"data: [DONE]\n\n")
            else:
                text = "The provider's stream ended before the response was complete."
                out.append(_stream_error(text, "stream_truncated", 502))
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._sse({"choices": [choice]})

    def _sse(self, fields: dict[str, Any]) -> bytes:
        doc = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.response_model}
        return b"data: " + orjson.dumps({**doc, **fields}) + b"\n\n"

    def _event(self, message: Message) -> bytes:
        if message.message_type != "event":
            self._done = True
            kind = message.exception_type or message.header(":error-code") or "bedrock_error"
            try:
                doc = orjson.loads(message.payload) if message.payload else {}
            except orjson.JSONDecodeError:
                doc = {}
            text = (doc.get("message") if isinstance(doc, dict) else None) or message.header(":error-message")
            status = EXCEPTION_STATUS.get(kind.lower(), 500)
            return _stream_error(str(text or f"Bedrock stream error {kind}"), kind, status)
        try:
            doc = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(doc, dict):
            return b""
        kind = message.event_type
        if kind == "messageStart":
            return self._chunk({"role": doc.get("role") or "assistant", "content": ""})
        if kind == "contentBlockStart":
            use = (doc.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return b""
            index = self._tools.setdefault(_block_index(doc), len(self._tools))
            function = {"name": use.get("name"), "arguments": ""}
            return self._chunk(
                {"tool_calls": [{"index": index, "id": use.get("toolUseId"), "type": "function", "function": function}]}
            )
        if kind == "contentBlockDelta":
            return self._delta(doc)
        if kind == "messageStop":
            self._stopped = True
            return self._chunk({}, STOP_REASONS.get(str(doc.get("stopReason")), "stop"))
        if kind == "metadata":
            self._done = True
            self.usage, usage = converse_usage(doc.get("usage"))
            out = b""
            if self.client_wants_usage and usage is not None:
                out = self._sse({"choices": [], "usage": usage})
            if not self._stopped:
                return out + _stream_error(
                    "The provider's stream ended without a stop reason.", "stream_truncated", 502
                )
            return out + b"data: [DONE]\n\n"
        return b""  # contentBlockStop, and event types added after this was written

    def _delta(self, doc: dict[str, Any]) -> bytes:
        delta = doc.get("delta")
        if not isinstance(delta, dict):
            return b""
        if isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        if isinstance(delta.get("toolUse"), dict):
            index = self._tools.setdefault(_block_index(doc), len(self._tools))
            fragment = str(delta["toolUse"].get("input") or "")
            return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            return self._chunk({"reasoning_content": reasoning["text"]})
        return b""  # reasoning signatures and redacted reasoning have no OpenAI field
