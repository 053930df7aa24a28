"""The worker's ext_proc gRPC server: `ExternalProcessor.Process` over extproc/http2_grpc.py.

Why not a gRPC library (the control plane's ADS and config servers stay on grpcio:
their streams live as long as the connection, so their cost is per config, not per
request): every HTTP request opens one ext_proc stream, so the gRPC layer's cost per
stream and per message is the floor under every request. Measured with no llmgw code
(`bench/grpc_floor.py`, `bench/envoy_extproc_floor.py`, results in `bench/results/`):
grpc.aio hands each completion from gRPC core's threads to the event loop through a
socket write; grpclib on h2 spends most of its CPU in generic HTTP/2 state machinery.

`ExternalProcessor.Process` (extproc/server.py) stays transport-free: an async
generator over the requests, with a context that only gives the invocation metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.http2_grpc import Http2GrpcServer, Requests
from extproc.server import ExternalProcessor

PROCESS_METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


class _Invocation:
    """What `Process` reads from its context: the stream's invocation metadata."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self._metadata


class ExtProcServer:
    """The ext_proc service on `unix:PATH` or `HOST:PORT`; `stop` lets streams in flight finish first."""

    def __init__(self, processor: ExternalProcessor) -> None:
        self.processor = processor
        self.http2 = Http2GrpcServer(PROCESS_METHOD, self._stream, decode=ep.ProcessingRequest.FromString)

    async def _stream(
        self, requests: Requests, metadata: list[tuple[str, str]], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        responses = self.processor.Process(requests, _Invocation(metadata))
        try:
            async for response in responses:
                await send(response.SerializeToString())
        finally:
            await responses.aclose()  # the stream's own cleanup (charges, metrics) runs even when Envoy cut it

    async def start(self, listen: str) -> None:
        await self.http2.start(listen)

    async def stop(self, grace: float) -> None:
        """New streams get UNAVAILABLE (Envoy retries them elsewhere); those in flight get `grace` seconds."""
        await self.http2.stop(grace)
