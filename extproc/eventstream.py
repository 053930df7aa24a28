"""Incremental decoder for the AWS event stream framing (`application/vnd.amazon.eventstream`).

Bedrock's ConverseStream answers in this binary framing instead of SSE. The
router stage receives the body in whatever pieces Envoy read from the socket,
so a frame may arrive split at any byte (even inside the 12-byte prelude); the
decoder keeps the partial frame until the rest arrives. Both CRC32 checksums
are verified: a corrupted or truncated frame must end the client's stream with
an error, never with half-parsed JSON. The decoder is pure (no I/O), so it is
tested byte by byte and against botocore's own parser.

Frame layout (all integers big-endian):

    total_length u32 | headers_length u32 | prelude_crc u32 (CRC32 of the first 8 bytes)
    headers (headers_length bytes) | payload | message_crc u32 (CRC32 of everything before it)

Each header is: name_length u8, name (UTF-8), value_type u8, value. Value types:
0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64, 6 bytes (u16 length),
7 string (u16 length), 8 timestamp (int64 milliseconds), 9 UUID (16 bytes).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

PRELUDE_LENGTH = 12  # total_length, headers_length, prelude_crc
MINIMUM_MESSAGE_LENGTH = PRELUDE_LENGTH + 4  # + message_crc
MAX_HEADERS_LENGTH = 128 * 1024  # the limits botocore and the AWS SDKs enforce
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

HeaderValue = bool | int | bytes | str

_FIXED = {2: (1, ">b"), 3: (2, ">h"), 4: (4, ">i"), 5: (8, ">q"), 8: (8, ">q")}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length, checksum or header)."""


@dataclass(frozen=True)
class Message:
    """One decoded frame: headers by name, raw payload (usually JSON)."""

    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def header(self, name: str) -> str:
        """A string header, or "" when absent or not a string."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""

    @property
    def message_type(self) -> str:
        """`event`, `exception` (a modelled error) or `error` (an unmodelled one)."""
        return self.header(":message-type") or "event"

    @property
    def event_type(self) -> str:
        return self.header(":event-type")

    @property
    def exception_type(self) -> str:
        return self.header(":exception-type")


class EventStreamDecoder:
    """Feed chunks, get complete messages; a partial frame waits for the next chunk.

    A corrupt frame sets `error` and `feed` returns the messages decoded before
    it; the stream cannot be resynchronised (there is no frame marker), so
    every later `feed` returns nothing.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: EventStreamError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at the end means a cut mid-frame)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Message]:
        if self.error is not None:
            return []
        self._buf += chunk
        messages: list[Message] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except EventStreamError as exc:
            self.error = exc
            self._buf.clear()
        return messages

    def _next(self) -> Message | None:
        buf = self._buf
        if len(buf) < PRELUDE_LENGTH:
            return None
        total, headers_length, prelude_crc = struct.unpack_from(">III", buf, 0)
        if zlib.crc32(buf[:8]) != prelude_crc:
            raise EventStreamError("event stream prelude checksum mismatch")
        if headers_length > MAX_HEADERS_LENGTH:
            raise EventStreamError(f"event stream headers too long ({headers_length} bytes)")
        payload_length = total - headers_length - MINIMUM_MESSAGE_LENGTH
        if payload_length < 0:
            raise EventStreamError(f"event stream frame length {total} is too short for its headers")
        if payload_length > MAX_PAYLOAD_LENGTH:
            raise EventStreamError(f"event stream payload too long ({payload_length} bytes)")
        if len(buf) < total:
            return None
        (message_crc,) = struct.unpack_from(">I", buf, total - 4)
        if zlib.crc32(buf[: total - 4]) != message_crc:
            raise EventStreamError("event stream message checksum mismatch")
        headers = _parse_headers(bytes(buf[PRELUDE_LENGTH : PRELUDE_LENGTH + headers_length]))
        payload = bytes(buf[PRELUDE_LENGTH + headers_length : total - 4])
        del buf[:total]
        return Message(headers=headers, payload=payload)


def _parse_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_length = data[pos]
            pos += 1
            name = data[pos : pos + name_length].decode("utf-8")
            pos += name_length
            kind = data[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                size, fmt = _FIXED[kind]
                (value,) = struct.unpack_from(fmt, data, pos)
                pos += size
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                pos += 2
                raw = data[pos : pos + length]
                if len(raw) != length:
                    raise EventStreamError(f"event stream header {name!r} is truncated")
                value = raw.decode("utf-8") if kind == 7 else raw
                pos += length
            elif kind == 9:
                value = data[pos : pos + 16]
                pos += 16
            else:
                raise EventStreamError(f"event stream header {name!r} has unknown type {kind}")
            if pos > end:
                raise EventStreamError(f"event stream header {name!r} is truncated")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"event stream headers are malformed: {exc}") from None
    return headers
