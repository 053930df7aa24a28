"""The worker's ext_proc gRPC server, on grpclib: HTTP/2 and gRPC framing on the worker's own event loop.

Why not grpc.aio (which the control plane's ADS server and the workers' config
client still use: long-lived streams, no per-request cost): every HTTP request
opens one ext_proc stream, and with grpc.aio each stream and message crosses
gRPC core's threads and a poller thread that wakes the event loop with a socket
write. Measured with no llmgw code (`bench/grpc_floor.py`,
`bench/envoy_extproc_floor.py`): grpclib costs ~20 % less server CPU per stream,
and Envoy itself ~13 % less per request; added latency at c=1 drops by ~0.2 ms.
Through the whole gateway (`bench/results/`): ~16 % less CPU per request and
~19 % more requests/s. The one workload that got slower is a 1 MiB body (pure
Python HTTP/2 reassembles it; ~16 % fewer req/s).

`ExternalProcessor.Process` (extproc/server.py) stays transport-free: an async
generator over the requests, with a context that only gives the invocation metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from h2.connection import H2Connection

from extproc.server import ExternalProcessor

PROCESS_METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"

# grpclib logs every stream Envoy cancels (a client that went away) at INFO.
logging.getLogger("grpclib").setLevel(logging.WARNING)

# h2 remembers how each closed stream of a connection was closed, up to 65,536 of them (so a
# frame arriving after a reset is ignored, not an error): ~100 bytes each, so a worker grew by
# ~6 MiB per Envoy connection over its first 65,536 requests (the soak saw +3.9 % in 8 minutes).
# Envoy keeps at most a few streams open per connection (bootstrap's max_concurrent_streams),
# so the most recent 1,024 are plenty; older ones count as closed, which they are.
H2Connection.MAX_CLOSED_STREAMS = 1024


class _Invocation:
    """What `Process` reads from its context: the stream's invocation metadata."""

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self._stream = stream

    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]]:
        metadata = self._stream.metadata
        return metadata.items() if metadata is not None else ()


class ExtProcService:
    """grpclib's handler mapping for the ExternalProcessor service; counts the streams in flight."""

    def __init__(self, processor: ExternalProcessor) -> None:
        self.processor = processor
        self.accepting = True
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            PROCESS_METHOD: Handler(
                self.process, Cardinality.STREAM_STREAM, ep.ProcessingRequest, ep.ProcessingResponse
            )
        }

    async def process(self, stream: Stream[ep.ProcessingRequest, ep.ProcessingResponse]) -> None:
        if not self.accepting:
            # Envoy's ext_proc retry policy retries UNAVAILABLE on another worker: nothing was processed.
            # The first message is read first: refused before it, the stream would be closed under a
            # client still writing it, and a reset may reach the client instead of the status.
            await stream.recv_message()
            raise GRPCError(Status.UNAVAILABLE, "extproc worker stopping")
        self.in_flight += 1
        self.idle.clear()
        responses = self.processor.Process(stream, _Invocation(stream))  # type: ignore[arg-type]
        try:
            async for response in responses:
                await stream.send_message(response)
        finally:
            await responses.aclose()  # the stream's own cleanup (charges, metrics) runs even when Envoy cut it
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()


class ExtProcServer:
    """The ext_proc service on `unix:PATH` or `HOST:PORT`; `stop` lets streams in flight finish first."""

    def __init__(self, processor: ExternalProcessor) -> None:
        self.service = ExtProcService(processor)
        self._server = Server([self.service])
        self._started = False

    async def start(self, listen: str) -> None:
        if listen.startswith("unix:"):
            await self._server.start(path=listen.removeprefix("unix:"))
        else:
            host, _, port = listen.rpartition(":")
            await self._server.start(host.strip("[]") or None, int(port))
        self._started = True

    async def stop(self, grace: float) -> None:
        """New streams get UNAVAILABLE (Envoy retries them elsewhere); those in flight get `grace` seconds."""
        if not self._started:
            return
        self.service.accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.service.idle.wait(), grace)
        self._server.close()  # cancels what is left
        await self._server.wait_closed()
