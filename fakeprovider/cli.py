"""Command line: `python -m fakeprovider` and the `llmgw fake-provider` subcommand.

`add_arguments` and `run` are separate from `main` so the llmgw CLI can mount
the same flags on its own subparser. The "listening on" line is printed (and
flushed) only after the socket is bound, so scripts and tests can wait for it
instead of sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import ssl
import sys
from typing import Any

import orjson

from fakeprovider.behaviour import Behaviour, BehaviourError
from fakeprovider.records import DEFAULT_RECORD_LIMIT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake provider's flags to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=9100, help="port, 0 = any (default %(default)s)")
    parser.add_argument("--name", default="fake", help="name used in replies (default %(default)s)")
    parser.add_argument("--latency-ms", type=float, help="sleep before response headers")
    parser.add_argument("--chunks", type=int, help="content pieces per streamed completion")
    parser.add_argument("--chunk-interval-ms", type=float, help="sleep between SSE events")
    parser.add_argument("--response-model", help="report this model instead of the request's")
    parser.add_argument("--require-auth", metavar="KEY", help="reject requests without this key")
    parser.add_argument(
        "--behaviour",
        metavar="JSON",
        help="initial behaviour as a JSON object (the explicit flags above win)",
    )
    parser.add_argument(
        "--record-limit",
        type=int,
        default=DEFAULT_RECORD_LIMIT,
        help="requests kept for /_fake/requests, 0 = none (default %(default)s)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 1 on a startup error."""
    try:
        behaviour = _behaviour_from_args(args)
        ssl_context = _ssl_context(cert=args.tls_cert, key=args.tls_key)
    except (BehaviourError, ValueError, OSError, ssl.SSLError) as exc:
        print(f"fake provider {args.name}: {exc}", file=sys.stderr, flush=True)
        return 1
    loop_factory: Any = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not essential
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(args, behaviour=behaviour, ssl_context=ssl_context))


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and serve."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m fakeprovider",
        description="Fake OpenAI-compatible LLM provider for demos, tests and benchmarks.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return run(args)


async def _serve(args: argparse.Namespace, *, behaviour: Behaviour, ssl_context: ssl.SSLContext | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    from fakeprovider.app import start_fake_provider  # aiohttp's server: only when serving

    try:
        provider = await start_fake_provider(
            host=args.host,
            port=args.port,
            behaviour=behaviour,
            ssl_context=ssl_context,
            name=args.name,
            record_limit=args.record_limit,
        )
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        print(
            f"fake provider {args.name}: cannot listen on {args.host}:{args.port}: {reason}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"fake provider {args.name} listening on {provider.listen_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await provider.close()
    return 0


def _behaviour_from_args(args: argparse.Namespace) -> Behaviour:
    behaviour = Behaviour()
    if args.behaviour:
        try:
            behaviour = behaviour.merged(orjson.loads(args.behaviour))
        except orjson.JSONDecodeError as exc:
            raise BehaviourError(f"--behaviour is not valid JSON: {exc}") from exc
    flags = {
        "latency_ms": args.latency_ms,
        "chunks": args.chunks,
        "chunk_interval_ms": args.chunk_interval_ms,
        "response_model": args.response_model,
        "require_auth": args.require_auth,
    }
    return behaviour.merged({k: v for k, v in flags.items() if v is not None})


def _ssl_context(*, cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
