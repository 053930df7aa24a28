"""Does a grpc.aio streaming server leak native memory on calls the client resets?

Why this exists: Envoy's ext_proc filter resets each stream when its request ends
unless `ext_proc_graceful_grpc_close` is on (envoy/bootstrap.yaml turns it on),
and grpc.aio frees the op array of a batch only when the batch succeeds
(grpc/grpc#43360), so every reset call leaked ~100 bytes in the extproc workers.
Re-run this after upgrading grpcio: if `reset` stays as flat as `half-close`,
the upstream bug is fixed.

It starts a bare grpc.aio stream-stream server (bytes in, bytes out, no protobuf)
in a child process on a Unix socket, then makes `--calls` calls per mode, each
exchanging two messages like an ext_proc stream, ended either by a half-close
(Envoy's graceful close) or by a reset (cancel without half-close), and prints
the server's glibc malloc in use after each mode.

Usage: PYTHONPATH=. .venv/bin/python bench/grpc_cancel_leak.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from extproc.memdiag import malloc_stats  # noqa: E402

SERVICE = "leak.Probe"


async def serve(sock: str) -> None:
    async def process(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield b"r" * 200

    async def stats(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        import gc

        gc.collect()
        return str(malloc_stats().get("malloc_in_use", 0)).encode()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Process": grpc.stream_stream_rpc_method_handler(process),
            "Stats": grpc.unary_unary_rpc_method_handler(stats),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(sock)
    await server.start()
    await server.wait_for_termination()


async def drive(sock: str, calls: int) -> None:
    async with grpc.aio.insecure_channel(sock) as channel:
        process = channel.stream_stream(f"/{SERVICE}/Process")
        stats = channel.unary_unary(f"/{SERVICE}/Stats")
        await channel.channel_ready()
        for mode in ("half-close", "reset", "half-close", "reset"):
            before = int(await stats(b""))
            started = time.monotonic()
            for _ in range(calls):
                call = process()
                for _ in range(2):
                    await call.write(b"q" * 300)
                    await call.read()
                if mode == "reset":
                    call.cancel()
                else:
                    await call.done_writing()
                    while await call.read() is not grpc.aio.EOF:
                        pass
            await asyncio.sleep(0.5)  # let the server finish the last calls
            after = int(await stats(b""))
            print(
                f"{mode:10s} {calls} calls in {time.monotonic() - started:5.1f} s: server malloc in use "
                f"{before / 1024:8.0f} -> {after / 1024:8.0f} KiB ({(after - before) / calls:+6.1f} B/call)",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=10000, help="calls per mode")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    sock = f"unix:{tempfile.mkdtemp(prefix='grpc-leak-')}/s.sock"
    server = subprocess.Popen([sys.executable, __file__, "--serve", sock])
    try:
        asyncio.run(drive(sock, args.calls))
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
