"""Anthropic Messages responses -> OpenAI chat completions: the response half of `openai_anthropic`.

The JSON message becomes a `chat.completion` (text -> content, `tool_use` ->
`tool_calls` with the input as a JSON string, thinking -> `reasoning_content`
as agentgateway does); SSE events become `chat.completion.chunk`s (role chunk
first, content / reasoning / tool-call deltas with index, id and name first and
then argument fragments, a finish chunk, the usage chunk only if the client
asked for `stream_options.include_usage`, then `[DONE]`). Provider errors
become OpenAI's schema with the same status (headers such as Retry-After are
left alone). A stream that ends without `message_stop`, or with an `error`
event, ends with an OpenAI error event and no `[DONE]` nor finish_reason, so
SDKs raise instead of reporting a clean, truncated answer.

The `JSON_TOOL` tool (how the request side implements `response_format`) is
not a tool call for the client: its input is the message content. In a JSON
response it replaces any text Claude wrote before calling it; a stream cannot
take back text already sent, so there the text stays in front (that only
happens when the tool could not be forced: with client tools or thinking).
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc import errors
from extproc.sse import SSEDecoder, SSEEvent
from extproc.translate.anthropic_wire import AnthropicUsage
from extproc.translate.base import HeaderChanges
from extproc.usage import Usage

JSON_TOOL = "llmgw_json_response"  # reserved tool name standing in for response_format

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_OPENAI_ERROR_TYPES = ("invalid_request_error", "authentication_error", "permission_error", "rate_limit_error")


def openai_usage(usage: Usage) -> dict[str, Any]:
    prompt, completion = usage.input or 0, usage.output or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read or 0},
    }


def _error_fields(body: bytes) -> tuple[str, str]:
    """(message, Anthropic error type) of an error body: Anthropic's schema, Google's (Vertex), or text."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        message = err.get("message")
        etype = err.get("type") or err.get("status")
        return (message if isinstance(message, str) else "", etype if isinstance(etype, str) else "")
    return body.decode("utf-8", "replace").strip()[:1000], ""


def openai_error(status: int, body: bytes) -> bytes:
    """A provider error body in OpenAI's schema, same status; the Anthropic error type becomes `code`."""
    message, etype = _error_fields(body)
    return errors.error_body(
        status=status, message=message or f"The provider answered HTTP {status}.", code=etype or "provider_error"
    )


class ChatFromAnthropic:
    """Anthropic Messages response (JSON or SSE) -> OpenAI chat completion (JSON or chunks)."""

    def __init__(self, *, model: str, client_wants_usage: bool, created: int) -> None:
        self.usage: Usage | None = None
        self.response_model = ""
        self.model = model
        self.client_wants_usage = client_wants_usage
        self.created = created
        self.status = 0
        self._sse: SSEDecoder | None = None
        self._body = b""
        self._acc = AnthropicUsage()
        self._id = ""
        self._tools: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool_call index
        self._json_blocks: set[Any] = set()  # blocks of the response_format tool: streamed as content
        self._stop_reason: str | None = None
        self._finished = False

    @property
    def streaming(self) -> bool:
        return self._sse is not None

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status = status
        if 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
            self._sse = SSEDecoder()
            return HeaderChanges(set={"content-type": "text/event-stream; charset=utf-8"}, remove=["content-length"])
        return HeaderChanges(set={"content-type": "application/json"}, remove=["content-length"])

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._sse is None:
            self._body += chunk
            if not end_of_stream:
                return b""
            if 200 <= self.status < 300:
                return self._translate_json(self._body)
            return openai_error(self.status, self._body)
        out = [self._event(ev) for ev in self._sse.feed(chunk)]
        if end_of_stream:
            tail = self._sse.flush()
            if tail.strip():  # a last event without its blank line
                out.extend(self._event(ev) for ev in SSEDecoder().feed(tail + b"\n\n"))
            if not self._finished:
                self._finished = True
                out.append(_error_event("The provider's stream ended before it was complete.", "stream_incomplete"))
        return b"".join(out)

    # --- JSON ----------------------------------------------------------------------------

    def _translate_json(self, body: bytes) -> bytes | None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        if isinstance(doc.get("model"), str):
            self.response_model = doc["model"]
        self._acc.update(doc.get("usage"))
        self.usage = self._acc.normalized()
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        json_text: str | None = None
        for block in doc.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif btype == "thinking" and isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
            elif btype == "tool_use" and block.get("name") == JSON_TOOL:
                json_text = orjson.dumps(block.get("input")).decode()
            elif btype == "tool_use":
                arguments = orjson.dumps(block.get("input", {})).decode()
                call = {"name": block.get("name"), "arguments": arguments}
                tool_calls.append({"id": block.get("id"), "type": "function", "function": call})
        content = json_text if json_text is not None else ("".join(texts) if texts or not tool_calls else None)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if tool_calls:
            message["tool_calls"] = tool_calls
        stop = doc.get("stop_reason")
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish(stop, tool_calls)}
        out: dict[str, Any] = {
            "id": doc.get("id", ""),
            "object": "chat.completion",
            "created": self.created,
            "model": self.response_model or self.model,
            "choices": [choice],
        }
        if self.usage is not None:
            out["usage"] = openai_usage(self.usage)
        return orjson.dumps(out)

    @staticmethod
    def _finish(stop_reason: Any, tool_calls: Any) -> str:
        if stop_reason == "tool_use" and not tool_calls:
            return "stop"  # only the response_format tool was called: that is the answer
        return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"

    # --- SSE -----------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        doc: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.response_model or self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.client_wants_usage:
            doc["usage"] = None
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def _event(self, ev: SSEEvent) -> bytes:
        if self._finished:
            return b""
        if ev.event == "ping":
            return b": ping\n\n"  # keeps idle connections open; SSE comments are ignored by clients
        try:
            doc = orjson.loads(ev.data) if ev.data else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return b""
        etype = doc.get("type") or ev.event
        if etype == "message_start":
            start: dict[str, Any] = doc["message"] if isinstance(doc.get("message"), dict) else {}
            self._id = str(start.get("id") or "")
            if isinstance(start.get("model"), str):
                self.response_model = start["model"]
            self._acc.update(start.get("usage"))
            self.usage = self._acc.normalized()
            return self._chunk({"role": "assistant", "content": ""})
        if etype == "content_block_start":
            return self._block_start(doc.get("index"), doc.get("content_block"))
        if etype == "content_block_delta":
            return self._block_delta(doc.get("index"), doc.get("delta"))
        if etype == "message_delta":
            delta = doc.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            self._acc.update(doc.get("usage"))
            self.usage = self._acc.normalized()
            return b""
        if etype == "message_stop":
            self._finished = True
            out = self._chunk({}, self._finish(self._stop_reason, self._tools))
            if self.client_wants_usage and self.usage is not None:
                usage_doc = {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.response_model or self.model,
                    "choices": [],
                    "usage": openai_usage(self.usage),
                }
                out += b"data: " + orjson.dumps(usage_doc) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        if etype == "error":
            self._finished = True
            message, error_type = _error_fields(ev.data)
            return _error_event(message or "The provider reported an error mid-stream.", error_type or "api_error")
        return b""

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "tool_use":
            if block.get("name") == JSON_TOOL:
                self._json_blocks.add(index)
                return b""
            tool_index = self._tools[index] = len(self._tools)
            start_input = block.get("input")
            arguments = orjson.dumps(start_input).decode() if isinstance(start_input, dict) and start_input else ""
            call = {"name": block.get("name"), "arguments": arguments}
            return self._chunk(
                {"tool_calls": [{"index": tool_index, "id": block.get("id"), "type": "function", "function": call}]}
            )
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        return b""

    def _block_delta(self, index: Any, delta: Any) -> bytes:
        if not isinstance(delta, dict):
            return b""
        dtype = delta.get("type")
        if dtype == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        if dtype == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return self._chunk({"reasoning_content": delta["thinking"]})
        if dtype == "input_json_delta" and isinstance(delta.get("partial_json"), str) and delta["partial_json"]:
            if index in self._json_blocks:
                return self._chunk({"content": delta["partial_json"]})
            if index in self._tools:
                fragment = {"index": self._tools[index], "function": {"arguments": delta["partial_json"]}}
                return self._chunk({"tool_calls": [fragment]})
        return b""  # signature_delta, citations_delta: nothing OpenAI clients can use


def _error_event(message: str, error_type: str) -> bytes:
    """An OpenAI-style stream error: the openai SDK raises APIError on `data: {"error": ...}`."""
    otype = error_type if error_type in _OPENAI_ERROR_TYPES else "server_error"
    err = {"message": message, "type": otype, "code": error_type, "param": None}
    return b"data: " + orjson.dumps({"error": err}) + b"\n\n"
