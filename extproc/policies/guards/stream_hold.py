"""Remote response guards (webhook, Bedrock, Model Armor, Azure) on a streamed response: hold, judge, release.

A remote guard judges a whole answer, and its mask (a webhook's rewritten choices, Bedrock's
anonymized outputs) replaces whole texts, so nothing can be released before it has answered.
With `promptGuard.streaming: Enabled`, the streamed events (after any regex stream mask) are
held, up to `MAX_HELD_BYTES`; at the end of the stream each output channel's text is judged
like a JSON response, and then the held events go out as they were, with the masked text
(carried by each channel's first text event; its later text events carry none), or are
replaced by one error event in the client's schema. The client sees the answer only at the
end: the price of a remote judgement on a stream. A stream that outgrows the hold is ended
with an error event (failing closed), never released unjudged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.operations import Operation
from extproc.policies.guards import engine
from extproc.policies.guards.config import GuardConfig
from extproc.sse import SSEDecoder, SSEEvent

MAX_HELD_BYTES = 4 << 20
TOO_LONG_MESSAGE = "The response is too long for the gateway's guardrails to inspect."


@dataclass
class StreamHold:
    guards: tuple[GuardConfig, ...]  # remote guards
    op: Operation
    held: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False
    outcome: engine.Outcome | None = None

    @property
    def anthropic(self) -> bool:
        return self.op.client_api == "anthropic"

    def hold(self, chunk: bytes) -> bytes:
        """Keep `chunk`; what to send now (nothing, or the error event once the hold overflows)."""
        if self.overflowed:
            return b""
        self.size += len(chunk)
        if self.size > MAX_HELD_BYTES:
            self.overflowed = True
            self.held.clear()
            return error_event(TOO_LONG_MESSAGE, anthropic=self.anthropic, code="guardrail_unavailable")
        self.held.append(chunk)
        return b""

    async def release(self, *, headers: Mapping[str, str], route: str) -> bytes:
        """At the end of the stream: judge the held answer and return what the client gets."""
        if self.overflowed:
            return b""
        raw = b"".join(self.held)
        self.held.clear()
        decoder = SSEDecoder()
        events = decoder.feed(raw)
        tail = decoder.flush()
        texts = self._texts(events)
        body: dict[str, Any]
        if self.anthropic:
            body = {"content": [{"type": "text", "text": t} for t in texts.values()]}
        else:
            body = {"choices": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in texts.items()]}
        self.outcome = await engine.run(
            self.guards, body, op=self.op.name, phase="response", headers=headers, route=route
        )
        if self.outcome.rejection is not None:
            rejection = self.outcome.rejection
            return error_event(rejection.message, anthropic=self.anthropic, code=rejection.code)
        if not self.outcome.masked:
            return raw
        if self.anthropic:
            masked = dict(zip(texts, (b["text"] for b in body["content"]), strict=True))
        else:
            masked = {c["index"]: c["message"]["content"] for c in body["choices"]}
        return b"".join(self._rewrite(e, masked) for e in events) + tail

    # --- the client's schema ------------------------------------------------------------------

    def _delta(self, data: Any) -> list[tuple[int, dict[str, Any], str]]:
        """(channel, holder, key) of each text delta in one event."""
        if not isinstance(data, dict):
            return []
        if self.anthropic:
            delta = data.get("delta")
            if (
                data.get("type") == "content_block_delta"
                and isinstance(delta, dict)
                and delta.get("type") == "text_delta"
            ):
                return [(int(data.get("index", 0)), delta, "text")]
            return []
        out = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                out.append((int(choice.get("index", 0)), delta, "content"))
        return out

    def _texts(self, events: list[SSEEvent]) -> dict[int, str]:
        texts: dict[int, str] = {}
        for event in events:
            for channel, holder, key in self._delta(_json(event)):
                texts[channel] = texts.get(channel, "") + str(holder.get(key, ""))
        return texts

    def _rewrite(self, event: SSEEvent, masked: dict[int, str]) -> bytes:
        data = _json(event)
        deltas = self._delta(data)
        if not deltas:
            return event.raw
        for channel, holder, key in deltas:
            holder[key] = masked.pop(channel, "")  # the whole text on the channel's first event
        prefix = f"event: {event.event}\n".encode() if event.event else b""
        return prefix + b"data: " + orjson.dumps(data) + b"\n\n"


def _json(event: SSEEvent) -> Any:
    if not event.data.startswith(b"{"):
        return None
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None


def error_event(message: str, *, anthropic: bool, code: str = "guardrail_rejected") -> bytes:
    """The event that ends a stream a guard stopped, in the client's schema."""
    if anthropic:
        err = {"type": "error", "error": {"type": "permission_error", "message": message}}
        return b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"
    body = {"error": {"message": message, "type": "permission_error", "code": code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
