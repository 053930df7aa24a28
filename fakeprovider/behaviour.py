"""How the fake provider misbehaves: latency, chunking and injected faults.

One mutable `Behaviour` per running provider is shared by all requests; tests
change it through the admin endpoint (`PUT /_fake/behaviour`), through
`FakeProvider.behaviour` / `FakeProviderThread.set_behaviour`, or for a single
request through the `x-fake-behaviour: <json>` header. Every path funnels
through `Behaviour.merged`, so the validation rules (names, types, ranges) are
the same whichever way a test reaches for them, and a typo in a field name is a
loud 400 instead of a silently ignored setting.

Fault fields (`error_status`, `reset_connection`, `cut_stream_after_chunks`)
are rationed by `error_count`: while it is None every request gets the fault;
otherwise each faulted request decrements it and at 0 the provider behaves
normally again ("fail the next two requests, then recover"). `fault_model`
narrows them to the requests for one model, so two providers that share one
host:port (a cheap and an expensive model on one API) can fail separately.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FAULT_FIELDS: tuple[str, ...] = ("reset_connection", "error_status", "cut_stream_after_chunks")
"""Fields whose effect is rationed by `error_count`."""


class BehaviourError(ValueError):
    """A behaviour change named an unknown field or gave a value of the wrong type."""


@dataclass(slots=True)
class Behaviour:
    """Knobs of a fake provider. Every field has a harmless default."""

    latency_ms: float = 0.0
    """Sleep before the response headers (models time to first byte)."""
    chunks: int = 5
    """Number of content pieces a streamed completion is split into."""
    chunk_interval_ms: float = 0.0
    """Sleep between two SSE events of a stream."""
    response_model: str | None = None
    """Report this as `model` instead of echoing the request's model."""
    response_text: str | None = None
    """Use this completion text instead of `Hello from NAME: <last user text>`."""
    error_status: int | None = None
    """Answer with this HTTP status and an OpenAI error body."""
    error_count: int | None = None
    """How many upcoming requests get the fault; None means all of them."""
    error_message: str | None = None
    """Message of the injected error (a default names the status and provider)."""
    retry_after: float | None = None
    """Seconds, sent as `Retry-After` with the injected error."""
    reset_connection: bool = False
    """Close the TCP connection without sending any response."""
    stall_before_headers_ms: float = 0.0
    """Sleep before any response byte (for client and gateway timeout tests)."""
    cut_stream_after_chunks: int | None = None
    """Streams only: abort the connection after this many SSE events, before [DONE]."""
    cut_cleanly: bool = False
    """With `cut_stream_after_chunks`: end the HTTP response properly there instead of aborting
    the connection (a stream that stops early without its final event, e.g. no [DONE])."""
    fault_model: str | None = None
    """Shared faults hit only requests for this model (body `model`, or the model in the path)."""
    require_auth: str | None = None
    """Expected key: `authorization: Bearer KEY`, `api-key: KEY` or `x-api-key: KEY`."""
    response_headers: dict[str, str] | None = None
    """Extra headers on every response (e.g. one only the gateway may set, to test it is removed)."""

    def merged(self, changes: Mapping[str, Any]) -> Behaviour:
        """Return a copy with `changes` applied (JSON merge: null resets a field).

        Raises BehaviourError on unknown fields or invalid values.
        """
        if not isinstance(changes, Mapping):
            raise BehaviourError("behaviour must be a JSON object")
        return dataclasses.replace(self, **_validated(changes))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as served by `GET /_fake/behaviour`."""
        return dataclasses.asdict(self)

    def fault_active(self, field: str) -> bool:
        """Whether fault `field` is configured (0 is a valid cut point, so not truthiness)."""
        value = getattr(self, field)
        return value is not None and value is not False


# field -> (accepted kind, nullable, minimum, maximum)
_RULES: dict[str, tuple[str, bool, float | None, float | None]] = {
    "latency_ms": ("number", False, 0, None),
    "chunks": ("int", False, 1, None),
    "chunk_interval_ms": ("number", False, 0, None),
    "response_model": ("str", True, None, None),
    "response_text": ("str", True, None, None),
    "error_status": ("int", True, 400, 599),
    "error_count": ("int", True, 0, None),
    "error_message": ("str", True, None, None),
    "retry_after": ("number", True, 0, None),
    "reset_connection": ("bool", False, None, None),
    "stall_before_headers_ms": ("number", False, 0, None),
    "cut_stream_after_chunks": ("int", True, 0, None),
    "cut_cleanly": ("bool", False, None, None),
    "fault_model": ("str", True, None, None),
    "require_auth": ("str", True, None, None),
    "response_headers": ("headers", True, None, None),
}

_DEFAULTS = Behaviour()


def _validated(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges; map null to the field's default."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        rule = _RULES.get(name)
        if rule is None:
            known = ", ".join(_RULES)
            raise BehaviourError(f"unknown behaviour field {name!r} (known: {known})")
        kind, nullable, low, high = rule
        if value is None:
            out[name] = None if nullable else getattr(_DEFAULTS, name)
            continue
        if not _kind_ok(kind, value):
            raise BehaviourError(f"behaviour field {name!r} must be {kind}, got {value!r}")
        if low is not None and value < low:
            raise BehaviourError(f"behaviour field {name!r} must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise BehaviourError(f"behaviour field {name!r} must be <= {high}, got {value!r}")
        out[name] = float(value) if kind == "number" else dict(value) if kind == "headers" else value
    return out


def _kind_ok(kind: str, value: object) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "headers":
        return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    return isinstance(value, str)


def retry_after_header(seconds: float) -> str:
    """Format seconds for `Retry-After`: an integer when whole, as servers usually send."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
