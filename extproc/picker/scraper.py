"""Model-server metrics, scraped on an interval in the background, and the picks made from them.

One `LoadBoard` per process (an extproc worker, or `llmgw epp`): it scrapes
`http://<ip:port>/metrics` of every endpoint it was asked to pick among, every
`interval` seconds, concurrently, with a short timeout; an endpoint not asked
about for `forget_after` seconds is dropped. A failed scrape keeps the last
load until it goes stale (`stale_after`), after which the scheduler treats the
endpoint as unknown. The scrape task is started on first use and stopped by
`close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from extproc.contract import ExtprocConfig
from extproc.picker.engines import DEFAULT_ENGINE, PodLoad, parse_load
from extproc.picker.prefix import PrefixIndex

if TYPE_CHECKING:  # imported when a pool is scraped: a worker with no pool does not load aiohttp
    import aiohttp
from extproc.picker.scheduler import Decision, pick

log = logging.getLogger("llmgw.picker")

SCRAPE_INTERVAL_S = 0.1
SCRAPE_TIMEOUT_S = 1.0
STALE_AFTER_S = 2.0
FORGET_AFTER_S = 60.0


class LoadBoard:
    def __init__(
        self, *, interval: float = SCRAPE_INTERVAL_S, stale_after: float = STALE_AFTER_S, scheme: str = "http"
    ) -> None:
        self.interval = interval
        self.stale_after = stale_after
        self.scheme = scheme
        self.loads: dict[str, PodLoad] = {}
        self.engines: dict[str, str] = {}  # endpoint -> engine type
        self.wanted: dict[str, float] = {}  # endpoint -> last time a pick considered it
        self.sent: dict[str, int] = {}  # picks since that endpoint's last scrape
        self.scrapes = 0  # completed scrape rounds
        self.prefixes = PrefixIndex()  # where each prompt prefix was sent (affinity)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._updated = asyncio.Event()

    def want(self, endpoints: Iterable[str], *, engine: str = DEFAULT_ENGINE) -> None:
        now = time.monotonic()
        for ep in endpoints:
            self.wanted[ep] = now
            self.engines[ep] = engine
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="llmgw-picker-scrape")

    def want_pools(self, config: ExtprocConfig) -> None:
        """Start scraping every endpoint of the pools a new config names (llmgw picks for them)."""
        for pool in config.pools.values():
            self.want(pool.endpoints, engine=pool.engine)

    def pick(
        self,
        endpoints: list[str],
        *,
        priority: int = 0,
        top_priority: int = 0,
        engine: str = DEFAULT_ENGINE,
        prefix: list[bytes] | None = None,
        model: str = "",
    ) -> Decision:
        """`prefix`: the prompt's block hashes (prefix.blocks); the pick is remembered for them."""
        self.want(endpoints, engine=engine)
        decision = pick(
            endpoints,
            self.loads,
            now=time.monotonic(),
            stale_after=self.stale_after,
            priority=priority,
            top_priority=top_priority,
            sent=self.sent,
            affinity=self.prefixes.affinity(prefix, endpoints) if prefix else None,
            model=model,
        )
        if decision.endpoints:
            first = decision.endpoints[0]
            self.sent[first] = self.sent.get(first, 0) + 1
            if prefix:
                self.prefixes.record(prefix, first)
        return decision

    async def wait_scraped(self, rounds: int = 1) -> None:
        """Until `rounds` more scrape rounds completed (tests, and `llmgw epp` readiness)."""
        target = self.scrapes + rounds
        while self.scrapes < target:
            self._updated.clear()
            await self._updated.wait()

    async def _run(self) -> None:
        import aiohttp

        # One User-Agent per process: a model server's logs tell the scrapers apart.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S),
            headers={"User-Agent": f"llmgw-picker/{os.getpid()}"},
        )
        try:
            while True:
                now = time.monotonic()
                for ep in [e for e, t in self.wanted.items() if now - t > FORGET_AFTER_S]:
                    for table in (self.wanted, self.loads, self.sent, self.engines):
                        table.pop(ep, None)
                await asyncio.gather(*(self._scrape(ep) for ep in list(self.wanted)))
                self.scrapes += 1
                self._updated.set()
                await asyncio.sleep(self.interval)
        finally:
            await self._session.close()

    async def _scrape(self, endpoint: str) -> None:
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.get(f"{self.scheme}://{endpoint}/metrics") as resp:
                if resp.status != 200:
                    return
                text = await resp.text()
            load = parse_load(text, engine=self.engines.get(endpoint, DEFAULT_ENGINE), at=time.monotonic())
        except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeDecodeError) as exc:
            log.debug("scrape of %s failed: %s", endpoint, exc)
            return
        self.loads[endpoint] = load
        self.sent[endpoint] = 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
