"""The workers' ext_proc server (grpclib) on a real Unix socket, driven by a real gRPC client.

What it must keep from grpc.aio: the stage metadata reaches `Process`, responses come
back in order, a stream the client cuts still runs its cleanup (charges and metrics
happen there), and a stopping worker finishes the streams it has while refusing new
ones with UNAVAILABLE, which Envoy's ext_proc retry policy sends to another worker.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from h2.connection import H2Connection

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


async def _started(tmp_path: Path) -> tuple[ExtProcServer, RecordingProcessor, str]:
    processor = RecordingProcessor()
    server = ExtProcServer(processor)  # type: ignore[arg-type]
    sock = str(tmp_path / "extproc.sock")
    await server.start(f"unix:{sock}")
    return server, processor, f"unix:{sock}"


def test_stream_answers_in_order_with_its_metadata(tmp_path: Path) -> None:
    async def main() -> None:
        server, processor, target = await _started(tmp_path)
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
        server, processor, target = await _started(tmp_path)
        processor.hold.clear()
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = ep_grpc.ExternalProcessorStub(channel).Process(metadata=STAGE)
                await call.write(HEADERS)
                await call.read()
                await call.write(BODY)
                await processor.holding.wait()
                call.cancel()  # the client went away mid-request: Envoy resets the stream
            await asyncio.wait_for(processor.closed_once.wait(), 30)  # a bound for a hang, not a timing
            assert processor.closed == 1
        finally:
            await server.stop(grace=1)

    asyncio.run(main())


def test_stop_finishes_streams_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    async def main() -> None:
        server, processor, target = await _started(tmp_path)
        processor.hold.clear()
        async with grpc.aio.insecure_channel(target) as channel:
            stub = ep_grpc.ExternalProcessorStub(channel)
            in_flight = stub.Process(metadata=STAGE)
            await in_flight.write(HEADERS)
            await in_flight.read()
            await in_flight.write(BODY)
            await processor.holding.wait()
            stopping = asyncio.create_task(server.stop(grace=30))
            await asyncio.sleep(0)  # stop() has begun: new streams are refused from here on
            refused = stub.Process(metadata=STAGE)
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


def test_a_long_lived_connection_does_not_remember_every_closed_stream(tmp_path: Path) -> None:
    """h2 keeps a record per closed stream (65,536 by default: ~6 MiB per Envoy connection); ours is bounded."""

    async def main() -> list[int]:
        server, _processor, target = await _started(tmp_path)
        try:
            async with grpc.aio.insecure_channel(target) as channel:  # one connection, as Envoy keeps it
                stub = ep_grpc.ExternalProcessorStub(channel)
                for _ in range(1500):
                    call = stub.Process(metadata=STAGE)
                    await call.write(HEADERS)
                    await call.read()
                    await call.done_writing()
                    assert await call.read() is grpc.aio.EOF
                return [len(c._closed_streams) for c in gc.get_objects() if isinstance(c, H2Connection)]
        finally:
            await server.stop(grace=1)

    remembered = asyncio.run(main())
    assert remembered and max(remembered) == H2Connection.MAX_CLOSED_STREAMS == 1024
