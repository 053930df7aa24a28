"""The supervisor's own HTTP endpoints: merged worker metrics, readiness, provider pauses.

`:15020/metrics` merges every extproc worker's metrics (prometheus_client
multiprocess mode); `:15021/healthz/ready` is 200 once Envoy is LIVE with a
config and a worker holds the extproc config; `:15021/llmgw/pause` is the
pause oracle that Envoy's health checks of failover providers ask (503 while
the provider named by the Host header is paused by its Retry-After, 200
otherwise; extproc/cooldown.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from extproc.cooldown import ORACLE_PATH, CooldownBoard


async def start_http(
    *,
    host: str,
    metrics_port: int,
    ready_port: int,
    multiproc_dir: str,
    is_ready: Callable[[], Awaitable[tuple[bool, str]]],
    state_dir: str | None = None,
    collectors: Sequence[Collector] = (),
) -> web.AppRunner:
    """`collectors`: this process's own metrics (control-plane health), beside the workers'."""

    async def metrics(_: web.Request) -> web.Response:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
        for collector in collectors:
            registry.register(collector)
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_: web.Request) -> web.Response:
        ok, why = await is_ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    board = CooldownBoard(state_dir) if state_dir else None

    async def pause(request: web.Request) -> web.Response:
        key = request.headers.get("Host", "").partition(":")[0]
        left = board.remaining_for_key(key) if board is not None else 0.0
        if left > 0:
            return web.Response(status=503, text=f"paused for {left:.1f} s\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz/ready", ready)
    app.router.add_get(ORACLE_PATH, pause)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, metrics_port).start()
    await web.TCPSite(runner, host, ready_port).start()
    return runner
