"""What the ext_proc stages call: request guards on the attempt's body, response guards on the client's.

Order in the data path (DESIGN: authenticate, limit, guard, transform, translate):

- request guards run in the attempt stage (or the router stage on a direct route), the
  first place that knows the backend, on the client's body before its translation, so
  one guard implementation serves every provider and the provider sees the masked text;
- response guards run in the router stage after the response is translated back into the
  client's schema, so they see (and mask) exactly the text the client will receive,
  whichever provider answered, and a streamed mask can hold back client-facing text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.operations import Operation
from extproc.policies.guards import engine
from extproc.policies.guards.config import GuardConfig, PromptGuardConfig
from extproc.policies.guards.stream import StreamGuard
from extproc.policies.guards.stream_hold import StreamHold

# Operations whose bodies carry prompts/answers the guards can read (texts.py).
GUARDED_OPERATIONS = frozenset(("chat_completions", "messages", "responses", "completions"))
STREAMED_OPERATIONS = frozenset(("chat_completions", "messages"))


@dataclass
class GuardedRequest:
    raw: bytes
    parsed: dict[str, Any] | None
    outcome: engine.Outcome


async def guard_request(
    policy: PromptGuardConfig,
    *,
    op: Operation,
    raw: bytes,
    parsed: dict[str, Any] | None,
    headers: Mapping[str, str],
    route: str,
) -> GuardedRequest:
    """Run the request guards; `raw`/`parsed` come back masked when a guard masked them."""
    if not policy.request or op.name not in GUARDED_OPERATIONS:
        return GuardedRequest(raw, parsed, engine.Outcome())
    body = parsed
    if body is None:
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            loaded = None
        body = loaded if isinstance(loaded, dict) else None
    if body is None:
        return GuardedRequest(raw, parsed, engine.Outcome())
    outcome = await engine.run(policy.request, body, op=op.name, phase="request", headers=headers, route=route)
    if outcome.masked:
        raw = orjson.dumps(body)
    return GuardedRequest(raw, body, outcome)


def response_guards(policy: PromptGuardConfig | None, *, op: Operation | None, status: int) -> tuple[GuardConfig, ...]:
    """The response guards that apply to this response (2xx, an operation they can read)."""
    if policy is None or op is None or op.name not in GUARDED_OPERATIONS or not 200 <= status < 300:
        return ()
    return policy.response


def stream_guards(
    guards: tuple[GuardConfig, ...], *, op: Operation, streaming_enabled: bool
) -> tuple[StreamGuard | None, StreamHold | None, tuple[str, ...]]:
    """(regex stream mask, hold for remote guards, kinds not applied) for a streamed response.

    Streams are guarded only with `promptGuard.streaming: Enabled` (agentgateway's default is
    off, to keep streaming fast); a guard that does not run is reported, never silently skipped.
    """
    if not streaming_enabled or op.name not in STREAMED_OPERATIONS:
        return None, None, tuple(g.kind for g in guards)
    regex = tuple(g for g in guards if g.kind == "regex")
    remote = tuple(g for g in guards if g.kind != "regex")
    mask = StreamGuard(guards=regex, anthropic=op.client_api == "anthropic") if regex else None
    hold = StreamHold(guards=remote, op=op) if remote else None
    return mask, hold, ()


async def guard_response_json(
    guards: tuple[GuardConfig, ...], *, op: Operation, body: bytes, headers: Mapping[str, str], route: str
) -> tuple[bytes | None, engine.Outcome]:
    """(new body or None, outcome) for a complete JSON response in the client's schema."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, engine.Outcome()
    if not isinstance(parsed, dict):
        return None, engine.Outcome()
    outcome = await engine.run(guards, parsed, op=op.name, phase="response", headers=headers, route=route)
    return (orjson.dumps(parsed) if outcome.masked else None), outcome
