"""Anthropic Messages dialect: `POST .../v1/messages` and Vertex AI's Claude (`:rawPredict`, `:streamRawPredict`).

Answers like Anthropic does, from validation to errors: a missing
`anthropic-version` header (direct API) is a 400, a body Anthropic would reject
is a 400 in its error schema, injected faults use its error types (401
authentication_error, 429 rate_limit_error with Retry-After, 529
overloaded_error, 500 api_error, ...), and streams are the real event sequence
(`message_start` ... `message_stop`, no `[DONE]`), aborted after `cut_after`
events when the behaviour says so. The bodies and events themselves are built
in `fakeprovider.anthropic_wire`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from fakeprovider import anthropic_wire as wire
from fakeprovider import respond
from fakeprovider.behaviour import retry_after_header
from fakeprovider.dialects import Exchange

_VERTEX_RE = re.compile(r"/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$")


def _error(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = dict(respond.JSON_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = retry_after_header(retry_after)
    return web.Response(status=status, body=wire.error_body(status=status, message=message), headers=headers)


class AnthropicDialect:
    name = "anthropic"

    def matches(self, method: str, path: str) -> bool:
        bare = path.split("?", 1)[0].rstrip("/")
        return method == "POST" and (
            bare.endswith(("/messages", "/messages/count_tokens")) or _VERTEX_RE.search(path) is not None
        )

    def is_streaming(self, path: str, data: Any) -> bool:
        return isinstance(data, dict) and data.get("stream") is True

    async def respond(self, ex: Exchange) -> web.StreamResponse:
        vertex = _VERTEX_RE.search(ex.request.path)
        behaviour = ex.behaviour
        if ex.error_status is not None:
            message = behaviour.error_message or f"Injected fault: HTTP {ex.error_status} from fake provider {ex.name}"
            return _error(ex.error_status, message, retry_after=behaviour.retry_after)
        if vertex is None and not ex.request.headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required")
        if ex.data is respond.INVALID_JSON:
            return _error(400, "There was an error parsing the body of your request: invalid JSON")
        if vertex is None and ex.request.path.split("?", 1)[0].rstrip("/").endswith("/count_tokens"):
            return _count_tokens(ex.data)
        problem = wire.validate(ex.data, vertex=vertex is not None)
        if problem is not None:
            return _error(400, problem)
        data: dict[str, Any] = ex.data
        if vertex is not None and (vertex.group(2) == "streamRawPredict") != (data.get("stream") is True):
            return _error(400, "stream must be true with :streamRawPredict and absent or false with :rawPredict")
        model = behaviour.response_model or (vertex.group(1) if vertex is not None else data["model"])
        reply = wire.plan_reply(data, name=ex.name, response_text=behaviour.response_text)
        message_id = wire.new_id("msg_")
        if data.get("stream") is not True:
            return respond.json_response(wire.message_body(reply, model=model, message_id=message_id))
        events = wire.stream_events(reply, model=model, message_id=message_id, chunks=behaviour.chunks)
        return await _send(ex, events)


def _count_tokens(data: Any) -> web.Response:
    """`POST /v1/messages/count_tokens`: one token per 4 characters of the messages' JSON (at least 1)."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("model"), str)
        or not isinstance(data.get("messages"), list)
    ):
        return _error(400, "model and messages are required")
    return respond.json_response(orjson.dumps({"input_tokens": max(1, len(orjson.dumps(data["messages"])) // 4)}))


async def _send(ex: Exchange, events: list[bytes]) -> web.StreamResponse:
    """Write the events (no `[DONE]`: Anthropic ends with `message_stop`); abort after `cut_after` events
    (or end there properly with `cut_cleanly`)."""
    response = web.StreamResponse(headers=respond.SSE_HEADERS)
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


DIALECT = AnthropicDialect()
