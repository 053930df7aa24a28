"""The AWS event stream decoder: frames split anywhere, every header type, CRC and length checks.

The fake Bedrock's encoder and botocore's parser are the references: what one
encodes, ours and botocore's must decode identically.
"""

from __future__ import annotations

import struct
import zlib

import orjson
from botocore.eventstream import EventStreamBuffer

from extproc.eventstream import EventStreamDecoder, EventStreamError, Message
from fakeprovider import bedrock_wire as bw


def _frames() -> bytes:
    return b"".join(
        [
            bw.event_frame("messageStart", {"role": "assistant"}),
            bw.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hé 🌍"}}),
            bw.event_frame("messageStop", {"stopReason": "end_turn"}),
            bw.exception_frame("throttlingException", "Too many requests"),
        ]
    )


def _decode_all(data: bytes, cuts: list[int]) -> list[Message]:
    decoder = EventStreamDecoder()
    out: list[Message] = []
    start = 0
    for cut in [*cuts, len(data)]:
        out.extend(decoder.feed(data[start:cut]))
        start = cut
    assert decoder.pending == 0
    return out


def test_decodes_fake_frames() -> None:
    messages = _decode_all(_frames(), [])
    assert [m.event_type for m in messages] == ["messageStart", "contentBlockDelta", "messageStop", ""]
    assert [m.message_type for m in messages] == ["event", "event", "event", "exception"]
    assert orjson.loads(messages[1].payload)["delta"] == {"text": "Hé 🌍"}
    assert messages[3].exception_type == "throttlingException"
    assert messages[0].header(":content-type") == "application/json"


def test_every_split_position_gives_the_same_messages() -> None:
    data = _frames()
    whole = _decode_all(data, [])
    for cut in range(1, len(data)):
        assert _decode_all(data, [cut]) == whole, cut


def test_byte_by_byte() -> None:
    data = _frames()
    assert _decode_all(data, list(range(1, len(data)))) == _decode_all(data, [])


def test_agrees_with_botocore() -> None:
    data = _frames()
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    theirs = [(m.headers, m.payload) for m in buffer]
    ours = [(m.headers, m.payload) for m in _decode_all(data, [])]
    assert ours == theirs


def _frame_with_all_header_types() -> bytes:
    def header(name: str, kind: int, raw: bytes) -> bytes:
        return bytes([len(name)]) + name.encode() + bytes([kind]) + raw

    headers = b"".join(
        [
            header("t", 0, b""),
            header("f", 1, b""),
            header("i8", 2, struct.pack(">b", -5)),
            header("i16", 3, struct.pack(">h", -300)),
            header("i32", 4, struct.pack(">i", 70000)),
            header("i64", 5, struct.pack(">q", -(2**40))),
            header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
            header("str", 7, struct.pack(">H", 5) + "héé".encode()),
            header("ts", 8, struct.pack(">q", 1_700_000_000_000)),
            header("uuid", 9, bytes(range(16))),
        ]
    )
    payload = b'{"x":1}'
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_every_header_type_like_botocore() -> None:
    data = _frame_with_all_header_types()
    [ours] = _decode_all(data, [])
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    [theirs] = list(buffer)
    assert ours.headers == theirs.headers
    assert ours.headers["t"] is True and ours.headers["f"] is False
    assert ours.headers["str"] == "héé" and ours.headers["i64"] == -(2**40)
    assert ours.payload == b'{"x":1}'


def test_prelude_checksum_mismatch() -> None:
    data = bytearray(bw.event_frame("messageStart", {"role": "assistant"}))
    data[9] ^= 0xFF
    decoder = EventStreamDecoder()
    good = bw.event_frame("messageStop", {"stopReason": "end_turn"})
    assert [m.event_type for m in decoder.feed(good + bytes(data))] == ["messageStop"]  # what came before stays
    assert isinstance(decoder.error, EventStreamError) and "prelude checksum" in str(decoder.error)
    assert decoder.feed(good) == []  # no resynchronisation after corruption


def test_message_checksum_mismatch_waits_for_the_whole_frame() -> None:
    data = bytearray(bw.event_frame("messageStop", {"stopReason": "end_turn"}))
    data[20] ^= 0x01  # inside the headers
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes(data[:-1])) == [] and decoder.error is None
    assert decoder.feed(bytes(data[-1:])) == []
    assert "message checksum" in str(decoder.error)


def _error_of(data: bytes) -> str:
    decoder = EventStreamDecoder()
    assert decoder.feed(data) == []
    assert decoder.error is not None
    return str(decoder.error)


def test_length_too_short_for_headers() -> None:
    prelude = struct.pack(">II", 16, 10)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    assert "too short" in _error_of(prelude + b"\x00" * 4)


def test_oversized_payload_is_rejected_before_buffering() -> None:
    prelude = struct.pack(">II", 64 * 1024 * 1024, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    assert "payload too long" in _error_of(prelude)


def test_truncated_header_is_an_error() -> None:
    headers = bytes([3]) + b"abc" + bytes([7]) + struct.pack(">H", 50) + b"short"
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers
    assert "truncated" in _error_of(body + struct.pack(">I", zlib.crc32(body)))


def test_pending_reports_a_cut_mid_frame() -> None:
    data = bw.event_frame("messageStart", {"role": "assistant"})
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:7]) == []
    assert decoder.pending == 7
