"""Per-request building blocks of the fake provider: routing, faults, streaming, errors.

Kept apart from `app.py` (server lifecycle and the request pipeline) so each
piece is small and can be read on its own. Nothing here holds state; the
shared behaviour and request log are passed in.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from fakeprovider import openai_wire as wire
from fakeprovider.behaviour import FAULT_FIELDS, Behaviour
from fakeprovider.records import RecordedRequest

CHAT, COMPLETIONS, EMBEDDINGS, MODELS, MODEL = range(5)
INVALID_JSON = object()
JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def route(method: str, path: str) -> tuple[int, str] | None:
    """Endpoint kind from the path's last segments, whatever the prefix."""
    path = path.rstrip("/")
    if method == "POST":
        if path.endswith("/chat/completions"):
            return CHAT, ""
        if path.endswith("/completions"):
            return COMPLETIONS, ""
        if path.endswith("/embeddings"):
            return EMBEDDINGS, ""
    elif method == "GET":
        if path.endswith("/models"):
            return MODELS, ""
        head, _, last = path.rpartition("/")
        if last and head.endswith("/models"):
            return MODEL, last
    return None


# Where a model sits in a path: Azure deployments, Bedrock model ids, Gemini/Vertex models.
_PATH_MODEL_RE = re.compile(r"/(?:deployments|model)/([^/]+)/|/models/([^/:]+):")


def request_model(path: str, data: Any) -> str | None:
    """The model a request asks for: the body's `model`, else the one its path names."""
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        return str(data["model"])
    match = _PATH_MODEL_RE.search(path)
    if match is None:
        return None
    return unquote(match.group(1) or match.group(2))


def take_faults(
    shared: Behaviour,
    overrides: dict[str, Any],
    behaviour: Behaviour,
    *,
    streaming: bool,
    model: str | None = None,
) -> tuple[bool, int | None, int | None]:
    """(reset, error status, cut point) for this request, spending the shared error_count.

    Faults from the per-request header always apply and never spend the budget;
    faults from the shared behaviour apply while `error_count` is None or > 0,
    and only to requests for `fault_model` when it is set.
    """
    budget = shared.error_count is None or shared.error_count > 0
    if behaviour.fault_model is not None and model != behaviour.fault_model:
        budget = False
    spent = False
    values: dict[str, Any] = {}
    for field in FAULT_FIELDS:
        if field == "cut_stream_after_chunks" and not streaming:
            values[field] = None
        elif field in overrides:
            values[field] = getattr(behaviour, field)
        elif budget and shared.fault_active(field):
            values[field] = getattr(shared, field)
            spent = True
        else:
            values[field] = None
    if spent and shared.error_count is not None:
        shared.error_count -= 1
    return (
        bool(values["reset_connection"]),
        values["error_status"],
        values["cut_stream_after_chunks"],
    )


def embeddings_response(data: dict[str, Any], model: str) -> web.Response:
    inputs = wire.embedding_inputs(data.get("input"))
    if inputs is None:
        return error_response(
            400,
            "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays",
            param="input",
        )
    dimensions = data.get("dimensions")
    if dimensions is None:
        dimensions = wire.DEFAULT_EMBEDDING_DIMENSIONS
    elif (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= wire.MAX_EMBEDDING_DIMENSIONS
    ):
        return error_response(400, "'dimensions' must be a positive integer", param="dimensions")
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return error_response(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    body = wire.embeddings(model=model, inputs=inputs, dimensions=dimensions, base64_encoding=encoding == "base64")
    return json_response(body)


async def pause(seconds: float) -> None:
    """Every deliberate delay (latency, stalls, chunk intervals) waits here, so a test can record them."""
    await asyncio.sleep(seconds)


async def send_stream(
    request: web.Request, events: list[bytes], *, interval_ms: float, cut: int | None, clean: bool = False
) -> web.StreamResponse:
    """Write the events and [DONE]; after `cut` events abort the connection (or, `clean`, end properly)."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    interval = interval_ms / 1000
    try:
        await response.prepare(request)
        for index, event in enumerate(events if cut is None else events[:cut]):
            if index and interval > 0:
                await pause(interval)
            await response.write(event)
        if cut is not None:
            if clean:
                await response.write_eof()
            else:
                await drain(request)
                abort(request)
            return response
        if interval > 0:
            await pause(interval)
        await response.write(wire.SSE_DONE)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away mid-stream; nothing left to do
    return response


async def drain(request: web.Request) -> None:
    """Let written events reach the socket before an abort discards the buffer."""
    transport = request.transport
    for _ in range(1000):
        if transport is None or transport.get_write_buffer_size() == 0:
            return
        await asyncio.sleep(0.001)


def abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def authorized(headers: Any, key: str) -> bool:
    return (
        headers.get("authorization") == f"Bearer {key}"
        or headers.get("api-key") == key
        or headers.get("x-api-key") == key
    )


def parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return INVALID_JSON


def record_request(request: web.Request, body: bytes, data: Any) -> RecordedRequest:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("utf-8", "replace")
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous}, {value}"
    return RecordedRequest(
        method=request.method,
        path=request.raw_path,
        headers=headers,
        body=body.decode("utf-8", "replace"),
        json=None if data is INVALID_JSON else data,
        time=time.time(),
    )


def json_response(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, headers=JSON_HEADERS)


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> web.Response:
    body = wire.error_body(status=status, message=message, error_type=error_type, code=code, param=param)
    return json_response(body, status=status)
