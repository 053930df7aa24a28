"""Gemini responses -> OpenAI: chat completions (JSON and SSE), legacy completions, embeddings, errors.

Why a state object per response: Gemini's stream (`streamGenerateContent?alt=sse`) is a
series of whole `GenerateContentResponse` events with no `[DONE]`; the OpenAI client
expects a role chunk first, content/tool-call deltas, one finish chunk per choice, a usage
chunk only if it asked, then `[DONE]`. Gemini marks the end of a candidate with
`finishReason`; a stream that closes before every candidate has one was cut, and must
end in an error the SDK raises (an SSE `data: {"error": ...}` event and no `[DONE]`),
never in a clean finish.

Usage is read once from `usageMetadata` (cumulative on every stream chunk, so the last
one wins): input = promptTokenCount (+ toolUsePromptTokenCount), which already includes
cachedContentTokenCount; output = candidatesTokenCount + thoughtsTokenCount (OpenAI
counts reasoning tokens as completion tokens). `modelVersion` is the response model.

Errors: Google's `{"error": {"code", "message", "status"}}` (a JSON array of them on
some endpoints) becomes OpenAI's `{"error": {"message", "type", "code", "param"}}` with
the same HTTP status; `Retry-After` passes through untouched.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.errors import error_body
from extproc.sse import SSEDecoder
from extproc.translate import stamps
from extproc.translate.base import HeaderChanges, RequestContext
from extproc.usage import Usage

DONE = b"data: [DONE]\n\n"
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def finish_reason(reason: str, *, tool_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"


def usage_of(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    prompt, tool_prompt = _int(meta.get("promptTokenCount")), _int(meta.get("toolUsePromptTokenCount"))
    candidates, thoughts = _int(meta.get("candidatesTokenCount")), _int(meta.get("thoughtsTokenCount"))
    return Usage(
        input=None if prompt is None and tool_prompt is None else (prompt or 0) + (tool_prompt or 0),
        output=None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0),
        cache_read=_int(meta.get("cachedContentTokenCount")),
    )


def openai_usage(meta: Any) -> dict[str, Any]:
    usage = usage_of(meta) or Usage()
    prompt, completion = usage.input or 0, usage.output or 0
    thoughts = _int(meta.get("thoughtsTokenCount")) if isinstance(meta, dict) else None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read or 0},
        "completion_tokens_details": {"reasoning_tokens": thoughts or 0},
    }


@dataclass
class Decoded:
    text: str
    reasoning: str
    calls: list[dict[str, Any]]


def decode(candidate: dict[str, Any]) -> Decoded:
    """Text, thought text and OpenAI tool calls of one candidate's parts."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            (reasoning if part.get("thought") is True else text).append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            tool_call: dict[str, Any] = {
                "id": call["id"] if isinstance(call.get("id"), str) and call["id"] else stamps.new_id("call_"),
                "type": "function",
                "function": {
                    "name": call.get("name", ""),
                    "arguments": orjson.dumps(call.get("args") if isinstance(call.get("args"), dict) else {}).decode(),
                },
            }
            if isinstance(part.get("thoughtSignature"), str):
                tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(tool_call)
    return Decoded("".join(text), "".join(reasoning), calls)


def _candidates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates; a prompt blocked before any candidate reads as one filtered candidate."""
    found = [c for c in doc.get("candidates") or [] if isinstance(c, dict)]
    feedback = doc.get("promptFeedback")
    if not found and isinstance(feedback, dict) and feedback.get("blockReason"):
        return [{"index": 0, "finishReason": "SAFETY"}]
    return found


def error_from_google(*, status: int, body: bytes) -> bytes:
    """OpenAI error body for a Google error body (or anything else the provider sent)."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, list) and doc:
        doc = doc[0]
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or f"HTTP {status} from provider")
        code = str(error.get("status") or "provider_error").lower()
    else:
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status} from provider" + (f": {snippet}" if snippet else "")
        code = "provider_error"
    return error_body(status=status, message=message, code=code)


def _sse(doc: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


@dataclass
class _Choice:
    tool_calls: int = 0
    finish: str | None = None


class GeminiResponse:
    """Per-request response state (see the module docstring)."""

    def __init__(self, ctx: RequestContext, *, client_wants_usage: bool, vertex: bool) -> None:
        self.ctx = ctx
        self.vertex = vertex
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.response_model = ""
        self.status = 0
        self._mode = "pass"
        self._buffer = b""
        self._sse = SSEDecoder()
        self._id = ""
        self._created = 0
        self._meta: Any = None
        self._choices: dict[int, _Choice] = {}
        self._failed = False

    @property
    def streaming(self) -> bool:
        return self._mode == "stream"

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status = status
        if status >= 400:
            self._mode = "error"
        elif 200 <= status < 300:
            self._mode = "stream" if self.ctx.stream and self.ctx.op != "embeddings" else "json"
        else:
            return HeaderChanges()
        content_type = "text/event-stream; charset=utf-8" if self._mode == "stream" else "application/json"
        return HeaderChanges(set={"content-type": content_type}, remove=["content-length"])

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._mode == "pass":
            return None
        if self._mode == "stream":
            return self._on_stream(chunk, end_of_stream)
        self._buffer += chunk
        if not end_of_stream:
            return b""
        body, self._buffer = self._buffer, b""
        if self._mode == "error":
            return error_from_google(status=self.status, body=body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(doc, dict):
            return body
        if self.ctx.op == "embeddings":
            return self._embeddings(doc)
        return orjson.dumps(self._completion(doc))

    # --- JSON ----------------------------------------------------------------------------

    def _envelope(self, doc: dict[str, Any]) -> None:
        if not self._id:
            prefix = "cmpl-" if self.ctx.op == "completions" else "chatcmpl-"
            rid = doc.get("responseId")
            self._id = prefix + rid if isinstance(rid, str) and rid else stamps.new_id(prefix)
            self._created = int(stamps.now())
        if isinstance(doc.get("modelVersion"), str) and doc["modelVersion"]:
            self.response_model = doc["modelVersion"]
        if "usageMetadata" in doc:
            self._meta = doc["usageMetadata"]
            self.usage = usage_of(self._meta)

    def _completion(self, doc: dict[str, Any]) -> dict[str, Any]:
        self._envelope(doc)
        legacy = self.ctx.op == "completions"
        choices = []
        for position, candidate in enumerate(_candidates(doc)):
            decoded = decode(candidate)
            index = _int(candidate.get("index"))
            index = position if index is None else index
            reason = finish_reason(str(candidate.get("finishReason") or "STOP"), tool_calls=bool(decoded.calls))
            if legacy:
                choices.append({"text": decoded.text, "index": index, "logprobs": None, "finish_reason": reason})
                continue
            message: dict[str, Any] = {
                "role": "assistant",
                "content": decoded.text if decoded.text or not (decoded.calls or decoded.reasoning) else None,
                "refusal": None,
            }
            if decoded.reasoning:
                message["reasoning_content"] = decoded.reasoning
            if decoded.calls:
                message["tool_calls"] = decoded.calls
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": reason})
        return {
            "id": self._id,
            "object": "text_completion" if legacy else "chat.completion",
            "created": self._created,
            "model": self.response_model or self.ctx.model,
            "choices": choices,
            "usage": openai_usage(self._meta),
        }

    def _embeddings(self, doc: dict[str, Any]) -> bytes:
        encoding = getattr(self.ctx, "encoding_format", None)  # set by the router stage when it knows
        vectors: list[Any] = []
        tokens: int | None = None
        if self.vertex:
            for prediction in doc.get("predictions") or []:
                emb = prediction.get("embeddings") if isinstance(prediction, dict) else None
                vectors.append(emb.get("values") if isinstance(emb, dict) else [])
                stats = emb.get("statistics") if isinstance(emb, dict) else None
                count = _int(stats.get("token_count")) if isinstance(stats, dict) else None
                if count is None and isinstance(stats, dict) and isinstance(stats.get("token_count"), float):
                    count = int(stats["token_count"])
                if count is not None:
                    tokens = (tokens or 0) + count
        else:
            items = doc.get("embeddings")
            if not isinstance(items, list) and isinstance(doc.get("embedding"), dict):
                items = [doc["embedding"]]
            for item in items if isinstance(items, list) else []:
                vectors.append(item.get("values") if isinstance(item, dict) else [])
            meta = doc.get("usageMetadata")
            tokens = _int(meta.get("promptTokenCount")) if isinstance(meta, dict) else None
        self.usage = Usage(input=tokens) if tokens is not None else None
        self.response_model = self.ctx.model
        data = []
        for index, values in enumerate(vectors):
            values = values if isinstance(values, list) else []
            vector: Any = values
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        usage = {"prompt_tokens": tokens or 0, "total_tokens": tokens or 0}
        return orjson.dumps({"object": "list", "data": data, "model": self.ctx.model, "usage": usage})

    # --- SSE -----------------------------------------------------------------------------

    def _chunk(self, index: int, delta: dict[str, Any] | None, reason: str | None) -> bytes:
        if self.ctx.op == "completions":
            text = (delta or {}).get("content", "")
            choice: dict[str, Any] = {"text": text, "index": index, "logprobs": None, "finish_reason": reason}
            obj = "text_completion"
        else:
            choice = {"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": reason}
            obj = "chat.completion.chunk"
        doc: dict[str, Any] = {
            "id": self._id,
            "object": obj,
            "created": self._created,
            "model": self.response_model or self.ctx.model,
            "choices": [choice],
        }
        if self.client_wants_usage:
            doc["usage"] = None
        return _sse(doc)

    def _on_stream(self, chunk: bytes, end_of_stream: bool) -> bytes:
        out: list[bytes] = []
        for event in self._sse.feed(chunk):
            if not event.data or self._failed:
                continue
            try:
                doc = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out.extend(self._stream_doc(doc))
        if end_of_stream:
            self._sse.flush()  # an unterminated event at the end is discarded (SSE spec)
            out.extend(self._stream_end())
        return b"".join(out)

    def _stream_doc(self, doc: dict[str, Any]) -> list[bytes]:
        if isinstance(doc.get("error"), dict):  # Google reports an error inside the stream
            self._failed = True
            error = doc["error"]
            status = _int(error.get("code")) or 500
            return [b"data: " + error_from_google(status=status, body=orjson.dumps(doc)) + b"\n\n"]
        self._envelope(doc)
        legacy = self.ctx.op == "completions"
        out: list[bytes] = []
        for position, candidate in enumerate(_candidates(doc)):
            index = _int(candidate.get("index"))
            index = position if index is None else index
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
                if not legacy:
                    out.append(self._chunk(index, {"role": "assistant", "content": ""}, None))
            if state.finish is not None:
                continue
            decoded = decode(candidate)
            if decoded.reasoning and not legacy:
                out.append(self._chunk(index, {"reasoning_content": decoded.reasoning}, None))
            if decoded.text:
                out.append(self._chunk(index, {"content": decoded.text}, None))
            if decoded.calls and not legacy:
                deltas = [{"index": state.tool_calls + i, **call} for i, call in enumerate(decoded.calls)]
                state.tool_calls += len(deltas)
                out.append(self._chunk(index, {"tool_calls": deltas}, None))
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason:
                state.finish = finish_reason(reason, tool_calls=state.tool_calls > 0)
                out.append(self._chunk(index, {}, state.finish))
        return out

    def _stream_end(self) -> list[bytes]:
        if self._failed:
            return []
        if not self._choices or any(state.finish is None for state in self._choices.values()):
            self._failed = True
            message = "The provider's stream ended before the response was complete."
            return [b"data: " + error_body(status=502, message=message, code="upstream_stream_truncated") + b"\n\n"]
        out = []
        if self.client_wants_usage and self._meta is not None:
            doc: dict[str, Any] = {
                "id": self._id,
                "object": "text_completion" if self.ctx.op == "completions" else "chat.completion.chunk",
                "created": self._created,
                "model": self.response_model or self.ctx.model,
                "choices": [],
                "usage": openai_usage(self._meta),
            }
            out.append(_sse(doc))
        out.append(DONE)
        return out
