"""Anthropic Messages client -> Anthropic provider: a passthrough that only counts.

Request: patched, never re-serialized wholesale (DESIGN convention 4): only the
model (when the backend overrides it) changes, plus the `anthropic-version`
header when the backend pins one (`apiVersion`); the client's own version and
beta headers otherwise reach Anthropic untouched. Response: bytes go back
unchanged; usage and the response model are read from the JSON body, or from
the `message_start` / `message_delta` events of a stream.

Usage normalization and the pinned API version live in anthropic_wire.py,
shared with the other pairs whose provider speaks the Messages format.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.sse import SSEDecoder
from extproc.translate.anthropic_wire import (
    AnthropicUsage,
    api_version,
    usage_from_anthropic,
)
from extproc.translate.base import HeaderChanges, RequestContext, Translating, UpstreamRequest, encode
from extproc.usage import Usage

INCOMPLETE_MESSAGE = "The provider's stream ended before it was complete."


class AnthropicPassthroughResponse:
    """Reads usage and model; never changes a byte of what the provider sent.

    A stream that ends without `message_stop` (or the provider's own `error`
    event) gets an Anthropic `error` event appended, so the anthropic SDK raises
    instead of returning a silently truncated message.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.response_model = ""
        self.status = 0
        self._acc = AnthropicUsage()
        self._sse: SSEDecoder | None = None
        self._body = b""
        self._complete = False

    @property
    def streaming(self) -> bool:
        return self._sse is not None

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status = status
        if 200 <= status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
            self._sse = SSEDecoder()
        return HeaderChanges()

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._sse is None:
            if 200 <= self.status < 300:
                self._body += chunk
                if end_of_stream:
                    self._read_json(self._body)
            return None
        for ev in self._sse.feed(chunk):
            if b'"message_start"' in ev.data or b'"message_delta"' in ev.data:
                self._read_event(ev.data)
            elif ev.event in ("message_stop", "error") or b'"type":"message_stop"' in ev.data:
                self._complete = True
        if end_of_stream and not self._complete:
            self._complete = True
            sep = b"\n\n" if self._sse.flush() else b""
            err = {"type": "error", "error": {"type": "api_error", "message": INCOMPLETE_MESSAGE}}
            return chunk + sep + b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"
        return None

    def _read_json(self, body: bytes) -> None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            self.usage = usage_from_anthropic(doc.get("usage"))
            if isinstance(doc.get("model"), str):
                self.response_model = doc["model"]

    def _read_event(self, data: bytes) -> None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if doc.get("type") == "message_start" and isinstance(doc.get("message"), dict):
            message = doc["message"]
            if isinstance(message.get("model"), str):
                self.response_model = message["model"]
            self._acc.update(message.get("usage"))
        elif doc.get("type") == "message_delta":
            self._acc.update(doc.get("usage"))
        self.usage = self._acc.normalized()


class AnthropicPair(Translating):
    client_api = "anthropic"
    provider_api = "anthropic"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        headers: dict[str, str] = {}
        version = api_version(ctx)
        if version is not None:
            headers["anthropic-version"] = version
        # ctx.model: the backend's fixed model, else the client's, else the backend's default
        if ctx.model and body.get("model") != ctx.model:
            body["model"] = ctx.model
            return UpstreamRequest(body=encode(body), headers=headers)
        return UpstreamRequest(body=None, headers=headers)

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> AnthropicPassthroughResponse:
        return AnthropicPassthroughResponse()


PAIR = AnthropicPair()
