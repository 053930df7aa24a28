"""Amazon Bedrock Runtime dialect: Converse, ConverseStream (binary event stream), Titan embeddings.

Serves `POST /model/{modelId}/converse`, `/converse-stream` and `/invoke` the
way bedrock-runtime does, so the gateway's translation, SigV4 signing and
event stream decoding are tested against the real wire format:

1. the SigV4 signature is verified first (with botocore, over the bytes that
   arrived and the known test credentials in `bedrock_wire`); a bad one gets
   Bedrock's 403 (`InvalidSignatureException`, `UnrecognizedClientException`,
   `MissingAuthenticationTokenException`);
2. an injected `error_status` answers in Bedrock's error shape (`{"message"}`
   + `x-amzn-ErrorType`), with `Retry-After` when the behaviour sets it;
3. the body is validated like Converse does (alternating roles, no blank
   text, `toolConfig` required with tool blocks) -> 400 `ValidationException`;
4. the reply follows the fake's rule ("Hello from NAME: " + last user text),
   or a `toolUse` of the first tool with `{"city": "Paris"}` when tools are
   offered and the last user text mentions the weather. Streams send
   `behaviour.chunks` text deltas (toolUse input in fragments split mid-token),
   each frame written in two halves so clients see frames split across reads;
   `cut_after` aborts the connection after that many frames. A last user
   text containing `THROTTLE_MIDSTREAM` gets a `throttlingException` frame
   after the second text delta and a clean end of the response, as Bedrock
   reports failures inside a started stream.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from fakeprovider import bedrock_wire as bw
from fakeprovider import openai_wire as wire
from fakeprovider import respond
from fakeprovider.behaviour import retry_after_header
from fakeprovider.dialects import Exchange

MIDSTREAM_THROTTLE = "THROTTLE_MIDSTREAM"
MIDSTREAM_MESSAGE = "Too many tokens, please wait before trying again."
_PATH_RE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke)$")


class BedrockDialect:
    name = "bedrock"

    def matches(self, method: str, path: str) -> bool:
        return method == "POST" and _PATH_RE.match(path) is not None

    def is_streaming(self, path: str, data: Any) -> bool:
        return path.endswith("/converse-stream")

    async def respond(self, ex: Exchange) -> web.StreamResponse:
        request = ex.request
        headers = {k.lower(): v for k, v in request.headers.items()}
        failure = bw.verify_sigv4(method=request.method, path=request.raw_path, headers=headers, body=ex.body)
        if failure is not None:
            return _error(403, failure.message, failure.error_type)
        if ex.error_status is not None:
            message = (
                ex.behaviour.error_message or f"Injected fault: HTTP {ex.error_status} from fake provider {ex.name}"
            )
            response = _error(ex.error_status, message)
            if ex.behaviour.retry_after is not None:
                response.headers["Retry-After"] = retry_after_header(ex.behaviour.retry_after)
            return response
        match = _PATH_RE.match(request.path)
        assert match is not None
        model = unquote(match["model"])
        if ex.data is respond.INVALID_JSON:
            return _error(400, "Malformed input request, please reformat your input and try again.")
        if match["op"] == "invoke":
            if "titan-embed" not in model:
                return _error(400, f"The fake Bedrock serves InvokeModel only for Titan text embeddings, not {model}.")
            status, body = bw.titan_embedding(ex.data, model)
            if status != 200:
                return _error(status, _message(body))
            return _json(body)
        problem = bw.validate_converse(ex.data)
        if problem is not None:
            return _error(400, problem)
        data: dict[str, Any] = ex.data
        last_user, usage = bw.prompt_and_usage(data)
        tool_name = bw.wants_tool(data, last_user)
        tool = (tool_name, bw.tool_use_id()) if tool_name else None
        text = ex.behaviour.response_text
        if text is None:
            text = wire.reply_text(name=ex.name, prompt=last_user)
        if match["op"] == "converse":
            return _json(bw.converse_reply(text=text, tool=tool, usage=usage))
        pieces = wire.split_text(text, ex.behaviour.chunks)
        frames = bw.stream_frames(pieces=pieces, tool=tool, usage=usage)
        if MIDSTREAM_THROTTLE in last_user:
            frames = [*frames[:3], bw.exception_frame("throttlingException", MIDSTREAM_MESSAGE)]
        return await _stream(
            request,
            frames,
            interval_ms=ex.behaviour.chunk_interval_ms,
            cut=ex.cut_after,
            clean=ex.behaviour.cut_cleanly,
        )


def _message(body: bytes) -> str:
    return str(orjson.loads(body).get("message", ""))


def _json(body: bytes) -> web.Response:
    return web.Response(
        status=200, body=body, headers={"Content-Type": "application/json", "x-amzn-RequestId": bw.request_id()}
    )


def _error(status: int, message: str, error_type: str | None = None) -> web.Response:
    body, headers = bw.error_response_parts(status, message, error_type)
    return web.Response(status=status, body=body, headers=headers)


async def _stream(
    request: web.Request, frames: list[bytes], *, interval_ms: float, cut: int | None, clean: bool = False
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": bw.EVENTSTREAM_CONTENT_TYPE, "x-amzn-RequestId": bw.request_id()}
    )
    interval = interval_ms / 1000
    try:
        await response.prepare(request)
        for index, frame in enumerate(frames if cut is None else frames[:cut]):
            if index and interval > 0:
                await respond.pause(interval)
            half = len(frame) // 2
            await response.write(frame[:half])
            await response.write(frame[half:])
        if cut is not None and not clean:
            await respond.drain(request)
            respond.abort(request)
            return response
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away mid-stream
    return response


DIALECT = BedrockDialect()
