"""gRPC over HTTP/2 for one bidirectional-streaming method, server side, on an asyncio transport.

Why hand-written, not a library: Envoy opens one ext_proc stream per HTTP request, so
the per-stream and per-frame cost of the gRPC layer is the floor under every request.
Measured with a do-nothing handler (`bench/grpc_floor.py`): grpc.aio hands each
completion from gRPC core's threads to the event loop through a socket write; grpclib
on h2 spends ~55 % of its CPU in h2/hyperframe/hpack's generic frame and state
machinery and ~30 % in its own stream layer. This module does only what Envoy's gRPC
client needs from a server: the connection preface and SETTINGS, PING, WINDOW_UPDATE
both ways, HEADERS/CONTINUATION (decoded by the `hpack` library: Huffman, dynamic
table), DATA carrying length-prefixed messages, RST_STREAM and GOAWAY. Frames are
parsed with `struct` straight from the receive buffer, and the few header blocks the
server sends are HPACK literals built once, so it keeps no encoder state.

One `StreamHandler` call per stream, with the stream's requests (decoded by the server's
`decode`) as an async iterator, its metadata, and a `send` for each serialized answer.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from hpack import Decoder
from hpack.exceptions import HPACKError

log = logging.getLogger("llmgw.extproc.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 4, 5
PROTOCOL_ERROR, INTERNAL_ERROR = 0x1, 0x2

_FRAME = struct.Struct(">BHBBI")  # length (24 bits as 8 + 16), type, flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_MESSAGE_PREFIX = struct.Struct(">BI")  # gRPC: compressed flag, length

# What this server asks of its peer: big frames (fewer of them per message), and windows
# that a buffered body fits in; received bytes are acknowledged once a quarter is used.
MAX_FRAME = 1 << 20
STREAM_WINDOW = 16 << 20
CONNECTION_WINDOW = 64 << 20
_DEFAULT_WINDOW = 65_535


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _FRAME.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(*headers: tuple[str, str]) -> bytes:
    """HPACK literals without indexing and without Huffman: valid for any decoder, no encoder state."""
    out = bytearray()
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return bytes(out)


RESPONSE_HEADERS = header_block((":status", "200"), ("content-type", "application/grpc"))
OK_TRAILERS = header_block(("grpc-status", "0"))


def trailers(status: int, message: str = "") -> bytes:
    fields = [("grpc-status", str(status))]
    if message:  # gRPC's percent-encoding: bytes outside printable ASCII, and "%" itself
        encoded = "".join(f"%{b:02X}" if b < 0x20 or b > 0x7E or b == 0x25 else chr(b) for b in message.encode())
        fields.append(("grpc-message", encoded))
    return header_block(*fields)


class Requests:
    """A stream's incoming messages (decoded by the server's `decode`), as an async iterator; ends at END_STREAM."""

    __slots__ = ("_loop", "_messages", "_waiter", "ended")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._messages: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.ended = False

    def put(self, message: Any) -> None:
        self._messages.append(message)
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> Any:
        while not self._messages:
            if self.ended:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._messages.popleft()


# handler(requests, metadata, send): the stream's decoded requests, its invocation metadata, and
# how to send one serialized response message.
StreamHandler = Callable[[Requests, list[tuple[str, str]], Callable[[bytes], Awaitable[None]]], Awaitable[None]]


class _Stream:
    __slots__ = (
        "done_local",
        "done_remote",
        "headers_sent",
        "id",
        "pending",
        "requests",
        "send_window",
        "task",
        "unacked",
        "window_waiter",
    )

    def __init__(self, stream_id: int, requests: Requests, send_window: int) -> None:
        self.id = stream_id
        self.requests = requests
        self.pending = bytearray()  # received bytes of a message not complete yet
        self.send_window = send_window
        self.unacked = 0
        self.headers_sent = False
        self.done_local = False  # trailers or a reset sent
        self.done_remote = False  # END_STREAM or a reset received
        self.task: asyncio.Task[None] | None = None
        self.window_waiter: asyncio.Future[None] | None = None


class Connection(asyncio.Protocol):
    """One HTTP/2 connection from Envoy: frames in, streams out to `handler`."""

    def __init__(self, server: Http2GrpcServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = Decoder()
        self.streams: dict[int, _Stream] = {}
        self.last_stream_id = 0
        self.header_block: tuple[int, int, bytearray] | None = None  # stream id, flags, fragments
        self.peer_max_frame = 16_384
        self.peer_initial_window = _DEFAULT_WINDOW
        self.send_window = _DEFAULT_WINDOW
        self.unacked = 0
        self.closed = False

    # -- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.server.connections.add(self)
        settings = _SETTING.pack(SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW) + _SETTING.pack(
            SETTINGS_MAX_FRAME_SIZE, MAX_FRAME
        )
        self.transport.write(
            frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - _DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.done_local = True
            self._cancel(stream)
        self.streams.clear()
        self.server.stream_done()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.preface_seen:
            if len(buf) < len(PREFACE):
                return
            if not buf.startswith(PREFACE):
                self._fail(PROTOCOL_ERROR)
                return
            del buf[: len(PREFACE)]
            self.preface_seen = True
        offset, size = 0, len(buf)
        while size - offset >= 9 and not self.closed:
            hi, lo, kind, flags, stream_id = _FRAME.unpack_from(buf, offset)
            length = (hi << 16) | lo
            end = offset + 9 + length
            if end > size:
                break
            payload = bytes(buf[offset + 9 : end])
            offset = end
            try:
                self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
            except (HPACKError, ValueError, struct.error, IndexError):
                log.warning("ext_proc connection: malformed frame (type %d); closing it", kind)
                self._fail(PROTOCOL_ERROR)
                return
            except Exception:  # a bug here must not leave the connection half-parsed
                log.exception("ext_proc connection failed on a frame (type %d); closing it", kind)
                self._fail(INTERNAL_ERROR)
                return
        if offset:
            del buf[:offset]

    # -- frames in

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.header_block is not None and kind != CONTINUATION:
            raise ValueError("a header block was interrupted")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self.header_block = (stream_id, flags, bytearray(payload))
            if flags & END_HEADERS:
                self._headers_done()
        elif kind == CONTINUATION:
            if self.header_block is None or self.header_block[0] != stream_id:
                raise ValueError("CONTINUATION without HEADERS")
            self.header_block[2].extend(payload)
            if flags & END_HEADERS:
                self._headers_done()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, _U32.unpack(payload)[0] & 0x7FFFFFFF)
        elif kind == PING:
            if not flags & ACK:
                self._write(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.done_remote = stream.done_local = True
                self._cancel(stream)
                self._forget(stream)
        elif kind == GOAWAY:
            pass  # the peer opens no new streams here; the ones it has finish
        elif kind == PUSH_PROMISE:
            raise ValueError("a client sent PUSH_PROMISE")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5).

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - len(payload) % 6, 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    self._wake_writer(stream)
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
        self._write(frame(SETTINGS, ACK, 0))

    def _window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self.send_window += increment
            for waiting in self.streams.values():
                self._wake_writer(waiting)
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            self._wake_writer(stream)

    def _headers_done(self) -> None:
        assert self.header_block is not None
        stream_id, flags, block = self.header_block
        self.header_block = None
        fields = self.decoder.decode(bytes(block), raw=True)  # always: it updates the decoder's table
        if stream_id in self.streams or stream_id <= self.last_stream_id or not stream_id % 2:
            known = self.streams.get(stream_id)
            if known is not None and flags & END_STREAM:  # trailers from the client end its side
                known.done_remote = True
                known.requests.end()
                self._forget(known)
            return
        self.last_stream_id = stream_id
        requests = Requests(self.loop)
        stream = _Stream(stream_id, requests, self.peer_initial_window)
        self.streams[stream_id] = stream
        path = ""
        metadata: list[tuple[str, str]] = []
        for name, value in fields:
            if name == b":path":
                path = value.decode()
            elif not name.startswith(b":"):
                metadata.append((name.decode(), value.decode(errors="replace")))
        if flags & END_STREAM:
            stream.done_remote = True
            requests.end()
        if path != self.server.method:
            self._finish(stream, 12, "unknown method")  # UNIMPLEMENTED
        elif not self.server.accepting:
            self._finish(stream, 14, "extproc worker stopping")  # UNAVAILABLE: Envoy retries another worker
        else:
            stream.task = self.loop.create_task(self._run(stream, metadata))

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)
        self.unacked += size
        if self.unacked >= CONNECTION_WINDOW // 4:
            self._write(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.unacked)))
            self.unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.done_remote:
            return  # a stream this side ended or reset: its data is acknowledged and dropped
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        stream.unacked += size
        if stream.unacked >= STREAM_WINDOW // 4 and not flags & END_STREAM:
            self._write(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.unacked)))
            stream.unacked = 0
        pending = stream.pending
        if pending:
            pending += payload
            data: bytes | bytearray = pending
        else:
            data = payload
        offset, total = 0, len(data)
        while total - offset >= 5:
            compressed, length = _MESSAGE_PREFIX.unpack_from(data, offset)
            if total - offset - 5 < length:
                break
            if compressed:
                raise ValueError("a compressed gRPC message (none was offered)")
            raw = bytes(data[offset + 5 : offset + 5 + length])
            offset += 5 + length
            try:
                message = self.server.decode(raw)
            except Exception:
                log.warning("ext_proc stream %d: a message that does not decode; failing the stream", stream_id)
                self._finish(stream, 13, "cannot parse the request message")  # INTERNAL
                stream.done_remote = True
                self._cancel(stream)
                self._forget(stream)
                return
            stream.requests.put(message)
        if offset == total:
            if pending:
                stream.pending = bytearray()
        elif offset or not pending:  # keep the rest; a message still arriving stays where it grows
            stream.pending = bytearray(data[offset:])
        if flags & END_STREAM:
            stream.done_remote = True
            stream.requests.end()
            self._forget(stream)

    # -- streams out

    async def _run(self, stream: _Stream, metadata: list[tuple[str, str]]) -> None:
        try:
            await self.server.handler(stream.requests, metadata, lambda message: self._send(stream, message))
        except asyncio.CancelledError:
            return  # reset by the client, or the connection went away: nothing to answer
        except Exception:
            log.exception("ext_proc stream handler failed")
            self._finish(stream, 2, "internal error")  # UNKNOWN
            return
        self._finish(stream, 0)

    async def _send(self, stream: _Stream, message: bytes) -> None:
        if stream.done_local or self.closed:
            raise asyncio.CancelledError
        data = memoryview(_MESSAGE_PREFIX.pack(0, len(message)) + message)
        out: list[bytes | memoryview] = []  # joined into one write
        if not stream.headers_sent:
            stream.headers_sent = True
            out.append(frame(HEADERS, END_HEADERS, stream.id, RESPONSE_HEADERS))
        sent, size = 0, len(data)
        while sent < size:
            room = min(self.send_window, stream.send_window, self.peer_max_frame, size - sent)
            if room <= 0:
                if out:
                    self._write(b"".join(out))
                    out.clear()
                stream.window_waiter = self.loop.create_future()
                await stream.window_waiter
                if stream.done_local or self.closed:
                    raise asyncio.CancelledError
                continue
            self.send_window -= room
            stream.send_window -= room
            out.append(_FRAME.pack(room >> 16, room & 0xFFFF, DATA, 0, stream.id))
            out.append(data[sent : sent + room])
            sent += room
        self._write(b"".join(out))

    def _finish(self, stream: _Stream, status: int, message: str = "") -> None:
        if stream.done_local or self.closed:
            return
        stream.done_local = True
        block = OK_TRAILERS if status == 0 and not message else trailers(status, message)
        if not stream.headers_sent:  # trailers-only: one HEADERS frame
            stream.headers_sent = True
            block = RESPONSE_HEADERS + block
        self._write(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, block))
        self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        if stream.done_local and stream.done_remote:
            self.streams.pop(stream.id, None)
            self.server.stream_done()

    def _cancel(self, stream: _Stream) -> None:
        task = stream.task
        if task is not None and not task.done():
            task.cancel()
        self._wake_writer(stream)

    @staticmethod
    def _wake_writer(stream: _Stream) -> None:
        waiter = stream.window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _fail(self, code: int) -> None:
        self._write(frame(GOAWAY, 0, 0, _U32.pack(self.last_stream_id) + _U32.pack(code)))
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def goaway(self) -> None:
        """No new streams on this connection (Envoy opens a new one); those open finish."""
        self._write(frame(GOAWAY, 0, 0, _U32.pack(self.last_stream_id) + _U32.pack(0)))


class Http2GrpcServer:
    """Serves `method` on `unix:PATH` or `HOST:PORT`; `stop` lets the streams in flight finish first."""

    def __init__(self, method: str, handler: StreamHandler, decode: Callable[[bytes], Any] = bytes) -> None:
        self.method = method
        self.handler = handler
        self.decode = decode
        self.accepting = True
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._idle = asyncio.Event()

    async def start(self, listen: str) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], Any] = lambda: Connection(self)  # noqa: E731
        if listen.startswith("unix:"):
            self._server = await loop.create_unix_server(factory, listen.removeprefix("unix:"))
        else:
            host, _, port = listen.rpartition(":")
            self._server = await loop.create_server(factory, host.strip("[]") or None, int(port))

    def in_flight(self) -> int:
        """Streams not answered yet (a stop waits for them); answered ones only wait for the client's END_STREAM."""
        return sum(1 for c in self.connections for s in c.streams.values() if not s.done_local)

    def streams_kept(self) -> int:
        """Streams this server still has a record of, answered or not."""
        return sum(len(c.streams) for c in self.connections)

    def stream_done(self) -> None:
        if not self.accepting and not self.in_flight():
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """New streams get UNAVAILABLE (Envoy retries them on another worker); those in flight get `grace` s."""
        if self._server is None:
            return
        self.accepting = False
        self._server.close()
        for connection in list(self.connections):
            connection.goaway()
        if self.in_flight():
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning("ext_proc server stopping with %d streams still open", self.in_flight())
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        await self._server.wait_closed()
