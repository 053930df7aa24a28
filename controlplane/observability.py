"""The supervisor's own HTTP endpoints: merged worker metrics, readiness, provider pauses.

`:15020/metrics` merges every extproc worker's metrics (prometheus_client
multiprocess mode); `:15021/healthz/ready` is 200 once Envoy is LIVE with a
config and a worker holds the extproc config; `:15021/llmgw/pause` is the
pause oracle that Envoy's health checks of failover providers ask (503 while
the provider named by the Host header is paused by its Retry-After, 200
otherwise; extproc/cooldown.py).

Served by the standard library's threading HTTP server, not aiohttp: three GET
endpoints for Prometheus and Envoy's health checks do not need a framework, and
importing aiohttp cost the supervisor ~10 MiB of RSS (bench/results/soak.md).
Reading the workers' metric files in a server thread also keeps that disk I/O
off the event loop that serves xDS.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from extproc.cooldown import ORACLE_PATH, CooldownBoard

# A connection idle (or trickling a request) this long is closed: each one holds a thread.
_CONNECTION_TIMEOUT_S = 30.0
_READY_TIMEOUT_S = 10.0


class _Server(ThreadingHTTPServer):
    # Envoy health-checks every failover provider against the pause oracle at once: the standard
    # library's listen backlog of 5 dropped connections beyond it, and a dropped SYN is retried
    # after 1 s, past the checks' 1 s timeout (a fresh gateway's providers started unhealthy).
    request_queue_size = 1024
    daemon_threads = True


class HttpEndpoints:
    """The running servers (one per port); `cleanup` stops them."""

    def __init__(self, servers: list[_Server]) -> None:
        self.servers = servers

    async def cleanup(self) -> None:
        for server in self.servers:
            await asyncio.to_thread(server.shutdown)
            server.server_close()


async def start_http(
    *,
    host: str,
    metrics_port: int,
    ready_port: int,
    multiproc_dir: str,
    is_ready: Callable[[], Awaitable[tuple[bool, str]]],
    state_dir: str | None = None,
    collectors: Sequence[Collector] = (),
) -> HttpEndpoints:
    """`collectors`: this process's own metrics (control-plane health), beside the workers'."""
    loop = asyncio.get_running_loop()
    board = CooldownBoard(state_dir) if state_dir else None

    def metrics() -> tuple[int, bytes, str]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
        for collector in collectors:
            registry.register(collector)
        return 200, generate_latest(registry), CONTENT_TYPE_LATEST

    async def check() -> tuple[bool, str]:
        return await is_ready()

    def ready() -> tuple[int, bytes, str]:
        try:
            ok, why = asyncio.run_coroutine_threadsafe(check(), loop).result(_READY_TIMEOUT_S)
        except TimeoutError:
            ok, why = False, "readiness check timed out"
        return (200 if ok else 503), f"{why}\n".encode(), "text/plain; charset=utf-8"

    def pause(host_header: str) -> tuple[int, bytes, str]:
        key = host_header.partition(":")[0]
        left = board.remaining_for_key(key) if board is not None else 0.0
        if left > 0:
            return 503, f"paused for {left:.1f} s\n".encode(), "text/plain; charset=utf-8"
        return 200, b"ok\n", "text/plain; charset=utf-8"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus and Envoy's health checks use it
        timeout = _CONNECTION_TIMEOUT_S

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                status, body, ctype = metrics()
            elif path == "/healthz/ready":
                status, body, ctype = ready()
            elif path == ORACLE_PATH:
                status, body, ctype = pause(self.headers.get("Host", ""))
            else:
                status, body, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log: health checks every few seconds would flood it

    servers = []
    for port in (metrics_port, ready_port):
        server = _Server((host, port), Handler)
        threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
        servers.append(server)
    return HttpEndpoints(servers)
