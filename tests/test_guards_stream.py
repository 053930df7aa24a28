"""Streamed responses: the regex mask (a card split across events and chunks is masked, never leaked) and the
hold-judge-release of remote guards."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from extproc.operations import OPERATIONS_BY_NAME
from extproc.policies.guards.config import GuardConfig
from extproc.policies.guards.stream import StreamGuard
from extproc.policies.guards.stream_hold import MAX_HELD_BYTES, StreamHold
from tests.fakes.guardrails import FakeGuardrails

CARD = "4111 1111 1111 1111"
TEXT = f"Your card is {CARD}, and the backup is 5500-0000-0000-0004. Bye."
MASKED = "Your card is <CREDIT_CARD>, and the backup is <CREDIT_CARD>. Bye."
MASK = GuardConfig(kind="regex", message="m", builtins=("CreditCard",))
REJECT = GuardConfig(kind="regex", message="No cards in answers.", action="Reject", builtins=("CreditCard",))
FRAGMENTS = ("4111", "1111 1", "5500", "0000-0004")


def openai_stream(text: str, piece: int) -> bytes:
    def event(data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(data) + b"\n\n"

    head = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    out = [event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    out += [
        event({**head, "choices": [{"index": 0, "delta": {"content": text[i : i + piece]}, "finish_reason": None}]})
        for i in range(0, len(text), piece)
    ]
    out.append(event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def anthropic_stream(text: str, piece: int) -> bytes:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"

    out = [event("message_start", {"type": "message_start", "message": {"id": "m1", "content": []}})]
    out.append(event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {}}))
    out += [
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[i : i + piece]}},
        )
        for i in range(0, len(text), piece)
    ]
    out.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    out.append(event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def run(guard: StreamGuard, stream: bytes, chunk: int) -> list[bytes]:
    """What the client receives, chunk by chunk, when Envoy hands over `chunk` bytes at a time."""
    return [guard.feed(stream[i : i + chunk], i + chunk >= len(stream)) for i in range(0, len(stream), chunk)]


def text_of(out: bytes, *, anthropic: bool) -> str:
    text = ""
    for line in out.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        data = orjson.loads(line[6:])
        if anthropic:
            if data.get("type") == "content_block_delta":
                text += data["delta"]["text"]
        else:
            for choice in data.get("choices", []):
                text += choice["delta"].get("content") or ""
    return text


@pytest.mark.parametrize("anthropic", [False, True])
def test_split_at_every_byte_and_every_event_size(anthropic: bool) -> None:
    make = anthropic_stream if anthropic else openai_stream
    for piece in (1, 2, 3, 7):
        stream = make(TEXT, piece)
        for chunk in range(1, 40):
            sent = run(StreamGuard(guards=(MASK,), anthropic=anthropic, holdback=64), stream, chunk)
            everything = b"".join(sent)
            assert text_of(everything, anthropic=anthropic) == MASKED, (piece, chunk)
            for fragment in FRAGMENTS:  # no piece of a card, in any event, ever
                assert all(fragment.encode() not in s for s in sent), (piece, chunk, fragment)
            assert b"[DONE]" in everything or anthropic


def test_default_holdback_and_a_card_split_over_three_events() -> None:
    events = [openai_stream(p, 100).split(b"\n\n")[1] + b"\n\n" for p in ("pay with 4111 11", "11 1111 ", "1111 today")]
    guard = StreamGuard(guards=(MASK,), anthropic=False)
    sent = [guard.feed(e, False) for e in events]
    sent.append(guard.feed(b"data: [DONE]\n\n", True))
    assert text_of(b"".join(sent), anthropic=False) == "pay with <CREDIT_CARD> today"
    assert all(b"4111" not in s and b"1111" not in s for s in sent)


@pytest.mark.parametrize("anthropic", [False, True])
def test_reject_ends_the_stream_with_an_error_event(anthropic: bool) -> None:
    make = anthropic_stream if anthropic else openai_stream
    guard = StreamGuard(guards=(REJECT,), anthropic=anthropic, holdback=64)
    sent = b"".join(run(guard, make(TEXT, 3), 5))
    assert b"4111" not in sent
    assert guard.rejected is not None and guard.summary() == [("regex", "reject")]
    tail = sent.rstrip(b"\n").split(b"\n")[-1]
    body = orjson.loads(tail[6:])
    if anthropic:
        assert body == {"type": "error", "error": {"type": "permission_error", "message": "No cards in answers."}}
        assert b"event: error\n" in sent
    else:
        assert body["error"]["message"] == "No cards in answers." and body["error"]["code"] == "guardrail_rejected"
    assert b"[DONE]" not in sent and b"message_stop" not in sent


def test_clean_stream_passes_through_with_the_same_text() -> None:
    text = "Nothing sensitive here, just words and 12 numbers."
    guard = StreamGuard(guards=(MASK,), anthropic=False)
    out = b"".join(run(guard, openai_stream(text, 4), 17))
    assert text_of(out, anthropic=False) == text and guard.summary() == [("regex", "allow")]


# --- remote guards on streams: hold, judge, release ---------------------------------------------


def _hold_run(hold: StreamHold, stream: bytes) -> bytes:
    sent = [hold.hold(stream[i : i + 10]) for i in range(0, len(stream), 10)]
    assert not any(sent), "nothing may leave before the verdict"
    return asyncio.run(hold.release(headers={}, route="r"))


@pytest.mark.parametrize("anthropic", [False, True])
def test_held_stream_released_masked_or_replaced_by_an_error(anthropic: bool) -> None:
    fake = FakeGuardrails().start()
    try:
        hook = GuardConfig(kind="webhook", message="x", url=f"http://127.0.0.1:{fake.port}")
        op = OPERATIONS_BY_NAME["messages" if anthropic else "chat_completions"]
        make = anthropic_stream if anthropic else openai_stream
        out = _hold_run(StreamHold(guards=(hook,), op=op), make("say MASKME twice MASKME", 4))
        assert text_of(out, anthropic=anthropic) == "say [webhook-masked] twice [webhook-masked]"
        assert b"MASKME" not in out and (b"message_stop" in out if anthropic else b"[DONE]" in out)
        clean = make("all fine", 3)
        assert _hold_run(StreamHold(guards=(hook,), op=op), clean) == clean
        out = _hold_run(StreamHold(guards=(hook,), op=op), make("REJECTME", 2))
        assert b"blocked by the webhook" in out and b"REJECTME" not in out
    finally:
        fake.stop()


def test_a_stream_too_long_to_hold_fails_closed() -> None:
    hold = StreamHold(
        guards=(GuardConfig(kind="webhook", message="x", url="http://127.0.0.1:9"),),
        op=OPERATIONS_BY_NAME["chat_completions"],
    )
    first = hold.hold(b"x" * (MAX_HELD_BYTES + 1))
    assert b"too long for the gateway's guardrails" in first and hold.hold(b"more") == b""
    assert asyncio.run(hold.release(headers={}, route="r")) == b""
