"""The workers' ext_proc server (extproc/http2_grpc.py) on a real Unix socket, driven by grpcio's client.

What it must keep from a gRPC library: the stage metadata reaches `Process`, responses
come back in order, messages larger than a frame and than the windows go through both
ways, many streams share a connection, a stream the client cuts still runs its cleanup
(charges and metrics happen there), a stopping worker finishes the streams it has while
new ones get UNAVAILABLE (which Envoy's ext_proc retry policy sends to another worker),
and nothing is kept per finished stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from hpack import Decoder

from extproc import http2_grpc
from extproc.grpc_service import ExtProcServer
from extproc.server import StreamContext


class RecordingProcessor:
    """Answers each message with its kind; records the metadata, and when a stream's generator closed."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str | bytes]] = []
        self.closed = 0
        self.closed_once = asyncio.Event()
        self.hold = asyncio.Event()  # a request body waits for this
        self.hold.set()
        self.holding = asyncio.Event()

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: StreamContext
    ) -> AsyncGenerator[ep.ProcessingResponse, None]:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        try:
            async for req in request_iterator:
                if req.WhichOneof("request") == "request_headers":
                    yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
                else:
                    self.holding.set()
                    await self.hold.wait()
                    yield ep.ProcessingResponse(request_body=ep.BodyResponse())
        finally:
            self.closed += 1
            self.closed_once.set()


HEADERS = ep.ProcessingRequest(request_headers=ep.HttpHeaders())
BODY = ep.ProcessingRequest(request_body=ep.HttpBody(body=b"{}", end_of_stream=True))
STAGE = (("x-llmgw-stage", "router"), ("x-llmgw-gateway", "default/gw"))


P = TypeVar("P")


async def _serving(tmp_path: Path, processor: P) -> tuple[ExtProcServer, P, str]:
    """`processor` behind the workers' server on a Unix socket: the server, the processor, the gRPC target."""
    server = ExtProcServer(processor)  # type: ignore[arg-type]
    target = f"unix:{tmp_path / 'extproc.sock'}"
    await server.start(target)
    return server, processor, target


async def _held_in_body(stub: ep_grpc.ExternalProcessorStub, processor: RecordingProcessor) -> Any:
    """A stream whose request body the processor holds (its `hold` is clear): mid-request."""
    call = stub.Process(metadata=STAGE)
    await call.write(HEADERS)
    await call.read()
    await call.write(BODY)
    await processor.holding.wait()
    return call


def test_stream_answers_in_order_with_its_metadata(tmp_path: Path) -> None:
    async def main() -> None:
        server, processor, target = await _serving(tmp_path, RecordingProcessor())
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = ep_grpc.ExternalProcessorStub(channel).Process(metadata=STAGE)
                await call.write(HEADERS)
                first = await call.read()
                await call.write(BODY)
                second = await call.read()
                await call.done_writing()
                assert await call.read() is grpc.aio.EOF
                assert await call.code() == grpc.StatusCode.OK
            assert first.WhichOneof("response") == "request_headers"
            assert second.WhichOneof("response") == "request_body"
            assert processor.metadata[0]["x-llmgw-stage"] == "router"
            assert processor.metadata[0]["x-llmgw-gateway"] == "default/gw"
            assert processor.closed == 1
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_a_cut_stream_still_runs_its_cleanup(tmp_path: Path) -> None:
    async def main() -> None:
        server, processor, target = await _serving(tmp_path, RecordingProcessor())
        processor.hold.clear()
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = await _held_in_body(ep_grpc.ExternalProcessorStub(channel), processor)
                call.cancel()  # the client went away mid-request: Envoy resets the stream
            await asyncio.wait_for(processor.closed_once.wait(), 30)  # a bound for a hang, not a timing
            assert processor.closed == 1
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_stop_finishes_streams_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    async def main() -> None:
        server, processor, target = await _serving(tmp_path, RecordingProcessor())
        processor.hold.clear()
        async with grpc.aio.insecure_channel(target) as channel:
            stub = ep_grpc.ExternalProcessorStub(channel)
            in_flight = await _held_in_body(stub, processor)
            stopping = asyncio.create_task(server.stop(grace=30))
            await asyncio.sleep(0)  # stop() has begun: new streams are refused from here on
            refused = stub.Process(metadata=STAGE)  # the connection said GOAWAY and the socket is closed
            with contextlib.suppress(grpc.aio.AioRpcError):
                await refused.write(HEADERS)
            assert await refused.code() == grpc.StatusCode.UNAVAILABLE
            assert not stopping.done()  # the stream in flight holds the stop
            processor.hold.set()
            answer = await in_flight.read()
            assert answer.WhichOneof("response") == "request_body"
            await in_flight.done_writing()
            assert await in_flight.read() is grpc.aio.EOF
            assert await in_flight.code() == grpc.StatusCode.OK
            await stopping
        assert processor.closed == 1  # the refused stream never reached Process

    asyncio.run(main())


class EchoProcessor:
    """Answers a request body with a response body of the same bytes (a large message both ways)."""

    def __init__(self) -> None:
        self.streams = 0

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: StreamContext
    ) -> AsyncGenerator[ep.ProcessingResponse, None]:
        self.streams += 1
        async for req in request_iterator:
            if req.WhichOneof("request") == "request_body":
                if req.request_body.body == b"fail":
                    raise RuntimeError("a bug in the handler")
                mutation = ep.BodyMutation(body=req.request_body.body)
                yield ep.ProcessingResponse(
                    request_body=ep.BodyResponse(response=ep.CommonResponse(body_mutation=mutation))
                )
            else:
                yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())


async def _echo(stub: ep_grpc.ExternalProcessorStub, body: bytes) -> bytes:
    call = stub.Process(metadata=STAGE)
    await call.write(HEADERS)
    await call.read()
    await call.write(ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True)))
    answer = await call.read()
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    return bytes(answer.request_body.response.body_mutation.body)


def test_large_messages_both_ways_and_many_streams_on_one_connection(tmp_path: Path) -> None:
    """4 MiB each way (far past a 16 KiB frame and the client's 64 KiB window), and 200 streams at once."""

    async def main() -> None:
        server, processor, target = await _serving(tmp_path, EchoProcessor())
        big = bytes(range(256)) * (4 * 4096)
        try:
            options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
            async with grpc.aio.insecure_channel(target, options=options) as channel:
                stub = ep_grpc.ExternalProcessorStub(channel)
                assert await _echo(stub, big) == big
                bodies = [f"stream {i} ".encode() * (i + 1) for i in range(200)]
                assert await asyncio.gather(*(_echo(stub, b) for b in bodies)) == bodies
            assert processor.streams == 201
            assert server.http2.in_flight() == server.http2.streams_kept() == 0  # nothing kept per finished stream
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_a_failing_handler_or_an_unknown_method_ends_the_stream_with_a_status(tmp_path: Path) -> None:
    async def main() -> None:
        server, _processor, target = await _serving(tmp_path, EchoProcessor())
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = ep_grpc.ExternalProcessorStub(channel).Process(metadata=STAGE)
                await call.write(HEADERS)
                await call.read()
                await call.write(ep.ProcessingRequest(request_body=ep.HttpBody(body=b"fail")))
                assert await call.code() == grpc.StatusCode.UNKNOWN
                other = channel.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Other")()
                assert await other.code() == grpc.StatusCode.UNIMPLEMENTED
                server.http2.accepting = False  # stopping, before the connection is told: trailers-only
                refused = ep_grpc.ExternalProcessorStub(channel).Process(metadata=STAGE)
                assert await refused.code() == grpc.StatusCode.UNAVAILABLE
                assert await refused.details() == "extproc worker stopping"
            assert server.http2.in_flight() == server.http2.streams_kept() == 0
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_garbage_instead_of_http2_closes_the_connection_only(tmp_path: Path) -> None:
    async def main() -> None:
        server, _processor, target = await _serving(tmp_path, EchoProcessor())
        try:
            reader, writer = await asyncio.open_unix_connection(target.removeprefix("unix:"))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 30) != b""  # our SETTINGS, then the close
            writer.close()
            async with grpc.aio.insecure_channel(target) as channel:  # the server still serves
                assert await _echo(ep_grpc.ExternalProcessorStub(channel), b"after") == b"after"
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_grpc_message_is_percent_encoded() -> None:
    block = http2_grpc.trailers(13, "bad 100% ünïcode\n")
    decoded = dict(Decoder().decode(block))
    assert decoded == {"grpc-status": "13", "grpc-message": "bad 100%25 %C3%BCn%C3%AFcode%0A"}


def test_it_also_listens_on_tcp() -> None:
    """`llmgw extproc --listen HOST:PORT` (a sidecar reached over the network)."""

    async def main() -> None:
        processor = EchoProcessor()
        server = ExtProcServer(processor)  # type: ignore[arg-type]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        await server.start(f"127.0.0.1:{port}")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert await _echo(ep_grpc.ExternalProcessorStub(channel), b"over tcp") == b"over tcp"
        finally:
            await server.stop(grace=1)

    asyncio.run(main())
