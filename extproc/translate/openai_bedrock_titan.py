"""OpenAI embeddings client -> Amazon Titan Text Embeddings on Bedrock (InvokeModel).

Titan has no batch endpoint: one InvokeModel call embeds one text. Fanning a
list out into several upstream calls is not something one Envoy attempt can
do, so `input` must be a single string (or a one-element list); a longer list
is a 400 that says so, and token-id inputs are a 400 too (Titan takes text).

Request (v2 body): `{"inputText", "dimensions"?, "normalize": true}`;
Titan v1 (`amazon.titan-embed-text-v1`) accepts only `inputText`, so the
other two are left out for it. OpenAI normalizes its embeddings, hence
`normalize: true`.

Response: `{"embedding": [...], "inputTextTokenCount": n}` -> an OpenAI
embeddings list with one item and `usage.prompt_tokens = n`. The vector is
returned as floats, or as base64 little-endian float32 (what OpenAI sends for
`encoding_format: base64`) when the response is built with
`encoding_format="base64"`. Errors keep their status in OpenAI's schema.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from extproc import errors
from extproc.translate.base import (
    HeaderChanges,
    RequestContext,
    Translating,
    TranslationError,
    UpstreamRequest,
    encode,
    finalized,
)
from extproc.translate.openai_bedrock_response import openai_error
from extproc.usage import Usage


def titan_request(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    value = body.get("input")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        raise TranslationError(
            f"Amazon Titan embeddings take one input per request; `input` has {len(value)} strings. "
            "Send one request per string.",
            code="too_many_inputs",
            param="input",
        )
    if not isinstance(value, str):
        raise TranslationError("Amazon Titan embeddings take `input` as one string of text.", param="input")
    if not value:
        raise TranslationError("`input` must not be empty.", param="input")
    out: dict[str, Any] = {"inputText": value}
    if "titan-embed-text-v1" not in ctx.model:
        dimensions = body.get("dimensions")
        if isinstance(dimensions, int) and not isinstance(dimensions, bool):
            out["dimensions"] = dimensions
        out["normalize"] = True
    return out


def _vector(values: list[Any], encoding_format: str) -> list[float] | str:
    floats = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
    return floats


class TitanEmbeddingsResponse:
    """Buffered JSON only: InvokeModel on an embeddings model never streams."""

    streaming = False

    def __init__(self, ctx: RequestContext, *, encoding_format: str = "float") -> None:
        self.usage: Usage | None = None
        self.response_model = ctx.model
        self.encoding_format = encoding_format
        self.status = 0
        self.headers: dict[str, str] = {}
        self._body = bytearray()

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        self.status, self.headers = status, headers
        return HeaderChanges(set={"content-type": "application/json"}, remove=["content-length"])

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        self._body += chunk
        if not end_of_stream:
            return b""
        body = bytes(self._body)
        if not 200 <= self.status < 300:
            return openai_error(status=self.status, headers=self.headers, body=body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("embedding"), list):
            message = "Bedrock answered without an embedding."
            return errors.error_body(status=502, message=message, code="bad_gateway")
        count = doc.get("inputTextTokenCount")
        tokens = count if isinstance(count, int) and not isinstance(count, bool) else None
        self.usage = Usage(input=tokens)
        item = {"object": "embedding", "index": 0, "embedding": _vector(doc["embedding"], self.encoding_format)}
        usage = {"prompt_tokens": tokens or 0, "total_tokens": tokens or 0}
        return orjson.dumps({"object": "list", "data": [item], "model": self.response_model, "usage": usage})


class TitanPair(Translating):
    client_api = "openai"
    provider_api = "bedrock_titan"

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest:
        converted = titan_request(body, ctx)
        headers = {"content-type": "application/json", "accept": "application/json"}
        return UpstreamRequest(body=encode(finalized(converted, ctx)), headers=headers)

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> TitanEmbeddingsResponse:
        # The response side knows only the RequestContext, which does not carry the
        # client's `encoding_format`: floats, which every OpenAI client accepts (the
        # openai SDK asks for base64 by default but decodes only strings).
        return TitanEmbeddingsResponse(ctx, encoding_format=getattr(ctx, "encoding_format", None) or "float")


PAIR = TitanPair()
