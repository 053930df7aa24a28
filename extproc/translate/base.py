"""The translation seam: what a (client API, provider API) pair module provides.

A pair turns the client's request into the provider's (body, path suffix,
extra headers) in the attempt stage, and the provider's response back into
the client's schema in the router stage, JSON or stream, keeping per-request
stream state in an explicit object. Pairs are pure: no I/O, no credentials
(those are the provider modules' job), and idempotent on retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from extproc.contract import ProviderConfig
from extproc.usage import Usage


@dataclass(frozen=True)
class RequestContext:
    provider: ProviderConfig | None  # None on the response side when no provider is known
    op: str  # operation name (extproc.operations): chat_completions, messages, embeddings, ...
    model: str  # the model to send upstream (the override, else the client's)
    stream: bool
    encoding_format: str | None = None  # embeddings: what the client asked for (base64 | float)
    # policies.ai steps on the body in the provider's schema before it is encoded (cache markers,
    # finalTransformations: extproc/policies/transforms.py); pairs that rebuild the body call it.
    finalize: Callable[[dict[str, Any]], object] | None = None


class TranslationError(ValueError):
    """The request cannot be expressed in the provider's API: answered as a 4xx in the client's schema."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param


# orjson.loads accepts 1024 levels of nesting, orjson.dumps only 254: a body between the two parses
# (and passes through unchanged where nothing is patched) but cannot be written again.
MAX_ENCODE_DEPTH = 254


def encode(body: Any) -> bytes:
    """JSON for a request body built from the client's: nesting orjson cannot write is the client's 400.

    Any other encoding failure is ours (a value of a type JSON has no form for) and is raised as is.
    """
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" not in str(exc):
            raise
    raise TranslationError(
        f"The request is nested too deeply for the gateway to rewrite it (at most about {MAX_ENCODE_DEPTH} levels).",
        code="nesting_too_deep",
    )


def finalized(out: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """`out` (a request body in the provider's schema) after the request's `finalize` step, if any."""
    if ctx.finalize is not None:
        ctx.finalize(out)
    return out


@dataclass
class UpstreamRequest:
    """What the attempt stage sends: a new body (None: the client's bytes unchanged)."""

    body: bytes | None
    path: str | None = None  # provider path (None: the provider module decides)
    headers: dict[str, str] = field(default_factory=dict)
    # The operation the provider module builds the path for, when the pair changes it
    # (an Anthropic Messages client sent to an OpenAI-compatible provider: chat_completions).
    op: str | None = None


@dataclass
class HeaderChanges:
    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


class ResponseTranslation(Protocol):
    """Per-request response state, created when the response headers arrive."""

    usage: Usage | None
    response_model: str

    def on_headers(self, status: int, headers: dict[str, str]) -> HeaderChanges:
        """Header changes for the client; called once."""
        ...

    @property
    def streaming(self) -> bool:
        """True when the body must be processed chunk by chunk (SSE, AWS event stream)."""
        ...

    def on_body(self, chunk: bytes, end_of_stream: bool) -> bytes | None:
        """The bytes to send the client for this chunk (None: unchanged)."""
        ...


class Pair(Protocol):
    client_api: str
    provider_api: str

    def needs_body(self, raw: bytes, ctx: RequestContext) -> bool:
        """Whether `request` must see the parsed body (False lets the raw body through unparsed)."""
        ...

    def request(self, body: dict[str, Any], ctx: RequestContext) -> UpstreamRequest: ...

    def response(self, ctx: RequestContext, *, client_wants_usage: bool) -> ResponseTranslation: ...


class Translating:
    """Base of the pairs that rewrite every request: they always need the parsed body."""

    def needs_body(self, raw: bytes, ctx: RequestContext) -> bool:
        return True
