"""The floor under the extproc: what a Python gRPC ext_proc server costs when it does nothing.

Issue 17's CPU targets (llmgw <= 6x plain Envoy per request) assume the cost is in our
handlers and the number of messages. This measures the server CPU of an ext_proc
service whose handler answers every message with an empty response, set up as the
worker is (uvloop, a Unix socket, the same server options), so the figures are
what any llmgw stream costs before the first line of our code runs:

- per stream, for 1, 2, 4 messages (a non-streaming request through the router stage
  is one stream of 4: request headers and body, response headers and body) and 32
  (a 30-event SSE response);
- the two handler styles grpc.aio offers: an async generator (what `extproc/server.py`
  used before) and `context.read()`/`context.write()`;
- grpclib (HTTP/2 on h2, in Python on the event loop), with the same handler;
- `llmgw`: the workers' own server (`extproc/grpc_service.py` over `extproc/http2_grpc.py`),
  with the async-generator handler behind it.

The client is a grpc.aio client in another process, 8 streams in flight; only the
server process's CPU (utime+stime from /proc) is counted. Rounds are interleaved
(every configuration once per round), and the median of the rounds is reported.

Usage (from the repo root, the project's Python):
    PYTHONPATH=. .venv/bin/python bench/grpc_floor.py                       # prints a markdown table
    PYTHONPATH=. .venv/bin/python bench/grpc_floor.py --out bench/results   # also writes grpc_floor.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import uvloop
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream
from procs import cpu_ticks

from extproc.grpc_service import ExtProcServer

STYLES = ("generator", "read-write", "grpclib", "llmgw")
MESSAGES = (1, 2, 4, 32)
_REQUEST_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"word "}}]}\n\n'


def _answer(req: ep.ProcessingRequest) -> ep.ProcessingResponse:
    which = req.WhichOneof("request")
    if which == "request_headers":
        return ep.ProcessingResponse(request_headers=ep.HeadersResponse())
    if which == "request_body":
        return ep.ProcessingResponse(request_body=ep.BodyResponse())
    if which == "response_headers":
        return ep.ProcessingResponse(response_headers=ep.HeadersResponse())
    return ep.ProcessingResponse(response_body=ep.BodyResponse())


class GeneratorStyle(ep_grpc.ExternalProcessorServicer):
    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        context.invocation_metadata()
        async for req in request_iterator:
            yield _answer(req)


class ReadWriteStyle(ep_grpc.ExternalProcessorServicer):
    async def Process(  # type: ignore[override]
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> None:
        context.invocation_metadata()
        while True:
            req = await context.read()
            if req is grpc.aio.EOF:
                return
            await context.write(_answer(req))


class GrpclibStyle:
    """The same handler behind grpclib's server, as extproc/grpc_service.py serves it."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/envoy.service.ext_proc.v3.ExternalProcessor/Process": Handler(
                self.process, Cardinality.STREAM_STREAM, ep.ProcessingRequest, ep.ProcessingResponse
            )
        }

    async def process(self, stream: Stream[ep.ProcessingRequest, ep.ProcessingResponse]) -> None:
        _ = stream.metadata
        async for req in stream:
            await stream.send_message(_answer(req))


async def _serve(style: str, socket: str) -> None:
    if style == "llmgw":
        ours = ExtProcServer(GeneratorStyle())  # type: ignore[arg-type]
        await ours.start(f"unix:{socket}")
        await asyncio.Event().wait()
        return
    if style == "grpclib":
        server_lib = Server([GrpclibStyle()])
        await server_lib.start(path=socket)
        await server_lib.wait_closed()
        return
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
        ]
    )
    servicer = GeneratorStyle() if style == "generator" else ReadWriteStyle()
    ep_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    await server.wait_for_termination()


def _stream(n: int) -> list[ep.ProcessingRequest]:
    """The messages of one ext_proc stream of `n` messages, shaped as Envoy sends them."""
    head = [
        ep.ProcessingRequest(request_headers=ep.HttpHeaders()),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=_REQUEST_BODY, end_of_stream=True)),
        ep.ProcessingRequest(response_headers=ep.HttpHeaders()),
    ]
    if n <= 4:
        tail = [ep.ProcessingRequest(response_body=ep.HttpBody(body=b'{"usage":{}}', end_of_stream=True))]
        return (head + tail)[:n]
    events = [ep.ProcessingRequest(response_body=ep.HttpBody(body=_EVENT)) for _ in range(n - 4)]
    return (
        head + events + [ep.ProcessingRequest(response_body=ep.HttpBody(body=b"data: [DONE]\n\n", end_of_stream=True))]
    )


async def _measure(socket: str, server_pid: int, *, messages: int, streams: int) -> float:
    """Server CPU microseconds per stream."""
    msgs = _stream(messages)
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = ep_grpc.ExternalProcessorStub(channel)

        async def one() -> None:
            call = stub.Process(metadata=(("x-llmgw-stage", "router"),))
            for msg in msgs:
                await call.write(msg)
                await call.read()
            await call.done_writing()
            await call.read()

        for _ in range(200):  # warm-up
            await one()
        gate = asyncio.Semaphore(8)

        async def bounded() -> None:
            async with gate:
                await one()

        before = cpu_ticks(server_pid) or 0
        await asyncio.gather(*(bounded() for _ in range(streams)))
        ticks = (cpu_ticks(server_pid) or 0) - before
        return ticks / os.sysconf("SC_CLK_TCK") / streams * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=3000, help="streams per configuration per round")
    parser.add_argument("--out", type=Path, default=None, help="write grpc_floor.md into this directory")
    parser.add_argument("--serve", nargs=2, metavar=("STYLE", "SOCKET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(*args.serve))
        return
    work = Path(tempfile.mkdtemp(prefix="llmgw-grpc-floor-"))
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for style in STYLES:
            socket = str(work / f"{style}.sock")
            proc = subprocess.Popen([sys.executable, __file__, "--serve", style, socket])
            servers[style] = (proc, socket)
        deadline = time.monotonic() + 20
        while not all(Path(s).exists() for _, s in servers.values()):
            if time.monotonic() > deadline:
                raise SystemExit("the servers did not start")
            time.sleep(0.05)
        figures: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for n in MESSAGES:
                for style in STYLES:
                    proc, socket = servers[style]
                    streams = args.streams if n <= 4 else max(300, args.streams // 8)
                    us = uvloop.run(_measure(socket, proc.pid, messages=n, streams=streams))
                    figures.setdefault((style, n), []).append(us)
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    report = _report(figures, rounds=args.rounds, streams=args.streams)
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "grpc_floor.md").write_text(report)


def _report(figures: dict[tuple[str, int], list[float]], *, rounds: int, streams: int) -> str:
    med = {k: statistics.median(v) for k, v in figures.items()}
    lines = [
        "# The gRPC floor: server CPU of an ext_proc service that does nothing",
        "",
        f"`bench/grpc_floor.py --rounds {rounds} --streams {streams}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} vCPUs (shared); "
        "median of the rounds (min-max). µs of server CPU per stream.",
        "",
        "| messages per stream | " + " | ".join(STYLES) + " |",
        "|---|" + "---|" * len(STYLES),
    ]
    for n in MESSAGES:
        cells = [f"{med[(s, n)]:.0f} ({min(figures[(s, n)]):.0f}-{max(figures[(s, n)]):.0f})" for s in STYLES]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for style in STYLES:
        per_msg = (med[(style, 32)] - med[(style, 4)]) / 28
        base = med[(style, 1)] - per_msg
        lines.append("")
        lines.append(
            f"{style}: ~{base:.0f} µs per stream plus ~{per_msg:.0f} µs per message "
            "(per message: the 4- and 32-message rows; per stream: the 1-message row less one message)."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
