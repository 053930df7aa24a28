"""The SSE decoder (`extproc.sse`): events whole, split at every byte, CRLF, partial tails."""

from __future__ import annotations

import pytest

from extproc.sse import SSEDecoder

STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b"event: custom\ndata: line one\ndata: line two\n\n"
    b": a comment\n\n"
    b"data: [DONE]\n\n"
)


def _events(dec: SSEDecoder, *chunks: bytes) -> list[tuple[bytes, bytes, str]]:
    out = []
    for chunk in chunks:
        out.extend((e.raw, e.data, e.event) for e in dec.feed(chunk))
    return out


def test_sse_whole_stream() -> None:
    events = _events(SSEDecoder(), STREAM)
    assert [e[1] for e in events] == [
        b'{"id":"1","choices":[{"delta":{"content":"Hel"}}]}',
        b"line one\nline two",
        b"",
        b"[DONE]",
    ]
    assert events[1][2] == "custom"
    assert b"".join(e[0] for e in events) == STREAM


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_sse_split_at_every_byte(crlf: bool) -> None:
    stream = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    expected = _events(SSEDecoder(), STREAM)
    for i in range(len(stream) + 1):
        dec = SSEDecoder()
        got = _events(dec, stream[:i], stream[i:])
        assert [(d, ev) for _, d, ev in got] == [(d, ev) for _, d, ev in expected], f"split at {i}"
        assert dec.flush() == b""


def test_sse_split_into_single_bytes() -> None:
    dec = SSEDecoder()
    got = _events(dec, *(STREAM[i : i + 1] for i in range(len(STREAM))))
    assert got == _events(SSEDecoder(), STREAM)


def test_sse_crlf() -> None:
    events = SSEDecoder().feed(b"event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("e", b"a\nb"), ("", b"c")]


def test_sse_multiline_data_and_no_space_after_colon() -> None:
    events = SSEDecoder().feed(b"data:first\ndata: second\n\n")
    assert events[0].data == b"first\nsecond"


def test_sse_flush_returns_partial_tail_once() -> None:
    dec = SSEDecoder()
    events = dec.feed(b"data: one\n\ndata: tw")
    assert [e.data for e in events] == [b"one"]
    assert dec.flush() == b"data: tw"
    assert dec.flush() == b""
    assert [e.data for e in dec.feed(b"data: three\n\n")] == [b"three"]


def test_sse_only_one_leading_space_is_removed() -> None:
    events = SSEDecoder().feed(b"data:   indented\n\n")
    assert events[0].data == b"  indented"
