"""Latency at a fixed offered rate: Poisson arrivals, open loop, no coordinated omission.

Why not h2load `--rps`: its clients fire on one shared timer, so N clients
send N requests at the same instant; a gateway that serves them one after
another then shows N times its service time as "latency at a low rate".
Here arrivals are a Poisson process (seeded, so every system gets the same
schedule), each request takes an idle keep-alive connection or opens one, and
its latency runs from its *scheduled* time, so a late client cannot hide a
slow server. The rates involved are small (half the slowest system's
maximum), well within what this asyncio client sends on time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from rawhttp import Conn, post


@dataclass
class OpenLoopResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    late_ms: list[float] = field(default_factory=list)  # how late the client sent (its own jitter)


async def _run(
    url: str, body: bytes, rate: float, seconds: float, seed: int, max_conns: int, headers: Mapping[str, str] | None
) -> OpenLoopResult:
    res = OpenLoopResult()
    template, path = Conn.for_url(url)
    idle: list[Conn] = []
    open_conns = 0
    slots = asyncio.Semaphore(max_conns)
    loop = asyncio.get_running_loop()

    async def one(scheduled: float) -> None:
        nonlocal open_conns
        async with slots:
            conn = idle.pop() if idle else Conn(template.host, template.port)
            res.late_ms.append((loop.time() - scheduled) * 1000)
            try:
                status = await asyncio.wait_for(post(conn, path, body, None, headers), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                res.errors += 1
                conn.close()
                return
            if 200 <= status < 300:
                res.latencies_ms.append((loop.time() - scheduled) * 1000)
            else:
                res.errors += 1
            idle.append(conn)

    # Open a few connections first, as a client with a pool would have.
    for _ in range(4):
        conn = Conn(template.host, template.port)
        await conn.ensure()
        idle.append(conn)
        open_conns += 1
    rng = random.Random(seed)
    tasks: list[asyncio.Task[None]] = []
    t = loop.time() + 0.05
    end = t + seconds
    while t < end:
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(t)))
        res.sent += 1
        t += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return res


def run(
    *,
    url: str,
    body: bytes,
    rate: float,
    seconds: float,
    seed: int = 6,
    max_conns: int = 256,
    headers: Mapping[str, str] | None = None,
) -> OpenLoopResult:
    """Send Poisson arrivals at `rate` per second for `seconds`; bounded by `max_conns` connections."""
    started = time.monotonic()
    try:
        import uvloop

        result = uvloop.run(_run(url, body, rate, seconds, seed, max_conns, headers))
    except ImportError:  # pragma: no cover - uvloop is in the project's venv
        result = asyncio.run(_run(url, body, rate, seconds, seed, max_conns, headers))
    if time.monotonic() - started > seconds + 60:
        raise RuntimeError("open-loop run overran")
    return result
