"""Regex response guards on a streamed (SSE) response, in the client's schema, with a bounded holdback.

agentgateway documents that its `Mask` "is not applied to streamed responses"; here it
is. The text deltas of each output channel (an OpenAI choice, an Anthropic content
block) are joined into one running text. Of the text not yet released, the last
`HOLDBACK` characters are held back, and a match that reaches into them holds back
from its start; the rest is released, masked. A match of at most `HOLDBACK`
characters therefore always lies wholly inside the held text when its last character
arrives, so no fragment of it is ever sent unmasked, however the provider's events
or Envoy's chunks split it. Built-in matches are shorter than `HOLDBACK`; a custom
pattern that matches longer text is masked only if the whole match is still held.

Released text replaces the text of the event that brought the new delta (an event
may so carry less text, or none, than it arrived with); the rest of a channel is
flushed, in an event of the same shape, before the first event that is not a text
delta (finish reason, block stop, usage, `[DONE]`) and at the end of the stream.
A match of a `Reject` guard ends the stream with an error event in the client's
schema (the text before the match may have been released; the match never is), and
drops everything after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.policies.guards.config import GuardConfig
from extproc.policies.guards.regex import RuleSet, Span, apply, compile_rules
from extproc.policies.guards.stream_hold import error_event
from extproc.sse import SSEDecoder, SSEEvent

HOLDBACK = 256  # characters held per channel when a custom pattern's match length is unbounded
CONTEXT = 32  # released characters kept so word boundaries at the release point see them


@dataclass
class _Channel:
    pending: str = ""  # received, not yet released
    context: str = ""  # tail of the released text
    template: dict[str, Any] | None = None  # last text event (OpenAI) for flush events


@dataclass
class StreamRejection:
    guard: GuardConfig


@dataclass
class StreamGuard:
    """Per-response state; `feed` returns the bytes to send the client for each chunk."""

    guards: tuple[GuardConfig, ...]  # regex guards only
    anthropic: bool
    holdback: int = 0  # 0: the longest match the rules allow (HOLDBACK with custom patterns)
    rejected: StreamRejection | None = None
    decisions: dict[int, str] = field(default_factory=dict)  # index in `guards` -> mask | reject
    _decoder: SSEDecoder = field(default_factory=SSEDecoder)
    _channels: dict[int, _Channel] = field(default_factory=dict)
    _rules: list[tuple[GuardConfig, RuleSet]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rules = [(g, compile_rules(g.builtins, g.patterns)) for g in self.guards]
        if self.holdback <= 0:  # as little as the rules allow: each character held is latency
            longest = [rules.max_match for _, rules in self._rules]
            self.holdback = HOLDBACK if None in longest else max(1, *(n or 0 for n in longest))

    def feed(self, chunk: bytes, end_of_stream: bool) -> bytes:
        if self.rejected is not None:
            return b""
        out: list[bytes] = []
        try:
            for event in self._decoder.feed(chunk):
                out.append(self._event(event))
            if end_of_stream:
                out.append(self._flush_all())
                out.append(self._decoder.flush())
        except _Rejected as exc:
            self.rejected = StreamRejection(exc.guard)
            self.decisions[self.guards.index(exc.guard)] = "reject"
            out.append(self._error_event(exc.guard))
        return b"".join(out)

    # --- events -----------------------------------------------------------------------------

    def _event(self, event: SSEEvent) -> bytes:
        if not event.data.startswith(b"{"):
            return self._flush_all() + event.raw  # [DONE], comments, pings
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return self._flush_all() + event.raw
        if not isinstance(data, dict):
            return self._flush_all() + event.raw
        if self.anthropic:
            return self._anthropic(event, data)
        return self._openai(event, data)

    def _openai(self, event: SSEEvent, data: dict[str, Any]) -> bytes:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            return self._flush_all() + event.raw  # usage-only chunk, error
        texts: list[tuple[dict[str, Any], int]] = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str) and not choice.get("finish_reason"):
                texts.append((delta, int(choice.get("index", 0))))
        if len(texts) != len(choices):
            return self._flush_all() + event.raw  # finish reason, tool calls, refusal
        for delta, index in texts:
            channel = self._channels.setdefault(index, _Channel())
            channel.template = data
            channel.pending += delta["content"]
            delta["content"] = self._release(channel, final=False)
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def _anthropic(self, event: SSEEvent, data: dict[str, Any]) -> bytes:
        etype = data.get("type")
        delta = data.get("delta")
        if etype == "content_block_delta" and isinstance(delta, dict) and delta.get("type") == "text_delta":
            index = int(data.get("index", 0))
            channel = self._channels.setdefault(index, _Channel())
            channel.pending += str(delta.get("text", ""))
            delta["text"] = self._release(channel, final=False)
            return b"event: content_block_delta\ndata: " + orjson.dumps(data) + b"\n\n"
        if etype == "content_block_stop":
            return self._flush(int(data.get("index", 0))) + event.raw
        return self._flush_all() + event.raw

    # --- holdback ---------------------------------------------------------------------------

    def _spans(self, text: str, pos: int) -> list[Span]:
        masks: list[Span] = []
        for i, (guard, rules) in enumerate(self._rules):
            spans = rules.spans(text, pos)
            if not spans:
                continue
            if guard.action == "Reject":
                raise _Rejected(guard)
            masks.extend(spans)
            self.decisions[i] = "mask"
        masks.sort(key=lambda s: (s[0], -s[1]))
        merged: list[Span] = []
        for span in masks:
            if merged and span[0] < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], span[1]), last[2])
            else:
                merged.append(span)
        return merged

    def _release(self, channel: _Channel, *, final: bool) -> str:
        text = channel.context + channel.pending
        pos = len(channel.context)
        spans = self._spans(text, pos)
        cut = len(text) if final else max(pos, len(text) - self.holdback)
        for start, end, _ in spans:
            if start < cut < end:
                cut = start
                break
        released = [(s - pos, e - pos, label) for s, e, label in spans if e <= cut]
        out = apply(text[pos:cut], released)
        channel.context = text[:cut][-CONTEXT:]
        channel.pending = text[cut:]
        return out

    def _flush(self, index: int) -> bytes:
        channel = self._channels.get(index)
        if channel is None or not channel.pending:
            return b""
        text = self._release(channel, final=True)
        if self.anthropic:
            data: dict[str, Any] = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta"}}
            data["delta"]["text"] = text
            return b"event: content_block_delta\ndata: " + orjson.dumps(data) + b"\n\n"
        template = dict(channel.template or {})
        template["choices"] = [{"index": index, "delta": {"content": text}, "finish_reason": None}]
        template.pop("usage", None)
        return b"data: " + orjson.dumps(template) + b"\n\n"

    def _flush_all(self) -> bytes:
        return b"".join(self._flush(i) for i in sorted(self._channels))

    def summary(self) -> list[tuple[str, str]]:
        """(kind, action) per guard so far; a guard after a rejection was not reached."""
        out = []
        for i, guard in enumerate(self.guards):
            out.append((guard.kind, self.decisions.get(i, "allow")))
            if self.decisions.get(i) == "reject":
                break
        return out

    def _error_event(self, guard: GuardConfig) -> bytes:
        return error_event(guard.message, anthropic=self.anthropic)


class _Rejected(Exception):
    def __init__(self, guard: GuardConfig) -> None:
        super().__init__(guard.kind)
        self.guard = guard
