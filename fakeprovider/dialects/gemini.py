"""Gemini dialect: AI Studio `/v1beta/models/M:method` and Vertex AI `.../publishers/google/models/M:method`.

Answers like Gemini does: a request with neither `x-goog-api-key` nor `Authorization:
Bearer` is a 401 UNAUTHENTICATED, a body Gemini would reject is a 400 INVALID_ARGUMENT,
injected faults use Google's error schema (`{"error": {"code", "message", "status"}}`,
429 RESOURCE_EXHAUSTED with Retry-After, ...), `:streamGenerateContent` without `alt=sse`
is refused (the gateway must ask for SSE), and streams end without `[DONE]`, aborted
after `cut_after` events when the behaviour says so. Bodies and events are built in
`fakeprovider.gemini_wire`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from fakeprovider import gemini_wire as wire
from fakeprovider import respond
from fakeprovider.behaviour import retry_after_header
from fakeprovider.dialects import Exchange

_PATH_RE = re.compile(
    r"^/(?:v1|v1beta|v1beta1)/(?P<vertex>projects/[^/]+/locations/[^/]+/publishers/google/)?"
    r"models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents"
    r"|embedContent|predict)$"
)


def _error(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = dict(respond.JSON_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = retry_after_header(retry_after)
    return web.Response(status=status, body=wire.error_body(status=status, message=message), headers=headers)


def _authenticated(request: web.Request) -> bool:
    bearer = request.headers.get("authorization", "")
    return bool(request.headers.get("x-goog-api-key")) or (bearer.startswith("Bearer ") and len(bearer) > 7)


class GeminiDialect:
    name = "gemini"

    def matches(self, method: str, path: str) -> bool:
        return method == "POST" and _PATH_RE.match(path) is not None

    def is_streaming(self, path: str, data: Any) -> bool:
        return path.endswith(":streamGenerateContent")

    async def respond(self, ex: Exchange) -> web.StreamResponse:
        match = _PATH_RE.match(ex.request.path)
        assert match is not None
        vertex = match.group("vertex") is not None
        path_model, method = match.group("model"), match.group("method")
        behaviour = ex.behaviour
        if not _authenticated(ex.request):
            return _error(401, "Request is missing required authentication credential.")
        if ex.error_status is not None:
            message = behaviour.error_message or f"Injected fault: HTTP {ex.error_status} from fake provider {ex.name}"
            return _error(ex.error_status, message, retry_after=behaviour.retry_after)
        if ex.data is respond.INVALID_JSON or not isinstance(ex.data, dict):
            return _error(400, "Invalid JSON payload received.")
        if method in ("batchEmbedContents", "embedContent", "predict"):
            served = ("predict", "embedContent") if vertex else ("batchEmbedContents", "embedContent")
            if method not in served:
                return _error(404, f"Method {method} is not served on this path.")
            if method == "predict":
                body, problem = wire.predict_embeddings(ex.data)
            elif method == "embedContent":
                body, problem = wire.embed_one(ex.data)
            else:
                body, problem = wire.batch_embed(ex.data, model=path_model)
            return respond.json_response(body) if body is not None else _error(400, problem or "invalid request")
        problem = wire.validate_generate(ex.data)
        if problem is not None:
            return _error(400, problem)
        stream = method == "streamGenerateContent"
        if stream and ex.request.query.get("alt") != "sse":
            return _error(400, "This fake serves streamGenerateContent as SSE only: add ?alt=sse.")
        model = behaviour.response_model or path_model
        reply = wire.plan_reply(ex.data, name=ex.name, response_text=behaviour.response_text)
        if not stream:
            config = ex.data.get("generationConfig") or {}
            count = config.get("candidateCount") if isinstance(config, dict) else None
            count = count if isinstance(count, int) and 1 <= count <= 8 else 1
            return respond.json_response(wire.generate_body(reply, model=model, candidates=count, vertex=vertex))
        return await _send(ex, wire.stream_events(reply, model=model, chunks=behaviour.chunks, vertex=vertex))


async def _send(ex: Exchange, events: list[bytes]) -> web.StreamResponse:
    """Write the events (Gemini has no `[DONE]`); abort after `cut_after` events."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    interval = ex.behaviour.chunk_interval_ms / 1000
    cut = ex.cut_after
    try:
        await response.prepare(ex.request)
        for index, event in enumerate(events if cut is None else events[:cut]):
            if index and interval > 0:
                await respond.pause(interval)
            await response.write(event)
        if cut is not None and not ex.behaviour.cut_cleanly:
            await respond.drain(ex.request)
            respond.abort(ex.request)
            return response
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away mid-stream
    return response


DIALECT = GeminiDialect()
