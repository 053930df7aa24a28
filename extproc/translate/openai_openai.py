"""OpenAI client -> OpenAI-compatible provider: patch, don't re-serialize (DESIGN convention 4).

Request: only the model (when the provider overrides it) and, for streamed
chat/completions, `stream_options.include_usage` so usage can be counted.
Response: usage read from the JSON or from the SSE usage chunk; that chunk is
hidden from a client that did not ask for it. A stream that ends without its
final event (`[DONE]`; for /responses `response.completed` and its kin) ends
with an error event instead, as the other pairs do: the openai SDK raises on
`data: {"error": ...}` rather than returning a silently truncated answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from extproc.operations import OPERATIONS_BY_NAME
from extproc.providers import fixed_model
from extproc.sse import SSEDecoder
from extproc.translate.base import HeaderChanges, RequestContext, UpstreamRequest, encode
from extproc.usage import Usage, from_openai


def _has_usage(data: bytes) -> bool:
    """Cheap pre-check so that only the chunk carrying usage is parsed (others say `"usage":null`)."""
    return b'"usage":{' in data or b'"usage": {' in data


# The last event of a complete stream (or the provider's own error event, which ends it too).
_RESPONSES_FINAL = frozenset(("response.completed", "response.failed", "response.incomplete", "error"))
INCOMPLETE_MESSAGE = "The provider's stream ended before it was complete."


class OpenAIResponse:
    def __init__(self, *, client_wants_usage: bool, responses_api: bool = False) -> None:
        self.usage: Usage | None = None
        self.response_model = ""
        self.client_wants_usage = client_wants_usage
        self.status = 0
        self._sse: SSEDecoder | None = None
        self._responses_api = responses_api
        self._complete = False

    @property
    def streaming(self) -> bool:
        return self._sse is not None

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status = status
        if headers.get("content-type", "").startswith("text/event-stream"):
            self._sse = SSEDecoder()
        return HeaderChanges()

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        if self._sse is None:
            if end_of_stream and 200 <= self.status < 300:
                self._read_json(chunk)
            return None
        return self._on_sse(chunk, end_of_stream)

    def _read_json(self, body: bytes) -> None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            self.usage = from_openai(doc.get("usage"))
            if isinstance(doc.get("model"), str):
                self.response_model = doc["model"]

    def _on_sse(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        assert self._sse is not None
        strip = not self.client_wants_usage
        kept: list[bytes] = []
        dropped = False
        for ev in self._sse.feed(chunk):
            if not self._complete and self._is_final(ev.event, ev.data):
                self._complete = True
            if ev.data and ev.data != b"[DONE]" and (_has_usage(ev.data) or not self.response_model):
                try:
                    doc = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    doc = None
                if isinstance(doc, dict):
                    if not self.response_model and isinstance(doc.get("model"), str):
                        self.response_model = doc["model"]
                    usage = from_openai(doc.get("usage"))
                    if usage is not None:
                        self.usage = usage if self.usage is None else self.usage.merged(usage)
                        if strip and doc.get("choices") == []:
                            dropped = True
                            continue
            kept.append(ev.raw)
        incomplete = end_of_stream and not self._complete and 200 <= self.status < 300
        if not strip:
            if not incomplete:
                return None
            return chunk + self._incomplete_event(self._sse.flush())
        # Hold back a partial event so that a usage chunk split across reads can still go.
        out = b"".join(kept)
        if end_of_stream:
            tail = self._sse.flush()
            out += tail + (self._incomplete_event(tail) if incomplete else b"")
        return out if dropped or out != chunk else None

    def _is_final(self, event: str, data: bytes) -> bool:
        if self._responses_api:
            return event in _RESPONSES_FINAL
        return data == b"[DONE]" or data.startswith(b'{"error"')

    def _incomplete_event(self, partial_tail: bytes) -> bytes:
        """The error event that ends a stream the provider left unfinished (after any cut-off event)."""
        self._complete = True
        sep = b"\n\n" if partial_tail else b""
        if self._responses_api:
            err = {"type": "error", "code": "stream_incomplete", "message": INCOMPLETE_MESSAGE, "param": None}
            return sep + b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"
        err = {"message": INCOMPLETE_MESSAGE, "type": "server_error", "code": "stream_incomplete", "param": None}
        return sep + b"data: " + orjson.dumps({"error": err}) + b"\n\n"


class OpenAIPair:
    client_api = "openai"
    provider_api = "openai"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        changed = False
        # ctx.model: the backend's fixed model, else the client's, else the backend's default (Azure deployment)
        if ctx.model and body.get("model") != ctx.model:
            body["model"] = ctx.model
            changed = True
        op = OPERATIONS_BY_NAME.get(ctx.op)
        if op is not None and op.stream_usage_option and body.get("stream") is True:
            options = body.get("stream_options")
            if not isinstance(options, dict):
                options = {}
            if options.get("include_usage") is not True:
                body["stream_options"] = {**options, "include_usage": True}
                changed = True
        return UpstreamRequest(body=encode(body) if changed else None)

    def needs_body(self, raw: bytes, ctx: RequestContext) -> bool:
        """Whether `request` can change anything: most requests skip the parse entirely."""
        op = OPERATIONS_BY_NAME.get(ctx.op)
        return (op is not None and fixed_model(ctx.provider, op) is not None) or (
            op is not None and op.stream_usage_option and b'"stream"' in raw
        )

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> OpenAIResponse:
        return OpenAIResponse(client_wants_usage=client_wants_usage, responses_api=ctx.op == "responses")


PAIR = OpenAIPair()
