"""The worker side of the config channel: keep the newest good config, survive restarts.

A config that fails to decode is rejected with a log line and the last good
one stays (DESIGN convention 7). While the control plane is away the worker
keeps serving and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from grpclib.exceptions import GRPCError, StreamTerminatedError

from extproc import credentials, metrics
from extproc.config_rpc import config_channel, watch
from extproc.contract import EMPTY, ExtprocConfig
from extproc.policies.guards.remote import credential_views as guard_credentials

log = logging.getLogger("llmgw.extproc.config")


# How long, and how many, replaced configs stay usable for requests Envoy routed by them: Envoy applies
# a new config within milliseconds of the workers, so this bounds how long a revoked key can pass.
RECENT_S = 10.0
KEEP_REPLACED = 3


class ConfigHolder:
    def __init__(self) -> None:
        self.current: ExtprocConfig = EMPTY
        self.ready = asyncio.Event()
        # Called with each accepted config, on the event loop (e.g. the picker's scraping starts).
        self.listeners: list[Callable[[ExtprocConfig], None]] = []
        self._changed = asyncio.Event()  # set (and replaced) on each accepted config
        # The configs this one replaced, newest first, with when they were replaced (`recent`).
        self._replaced: list[tuple[float, ExtprocConfig]] = []

    def recent(self, wanted: Callable[[ExtprocConfig], bool]) -> ExtprocConfig | None:
        """The newest config replaced less than `RECENT_S` ago for which `wanted` holds, or None.

        The other side of `until`: the worker can be ahead of Envoy. A request Envoy still routes on a
        route of the previous config (an API key policy's old id, before a rotation reached Envoy) is
        served with the config Envoy routed it by, not refused for our own race.
        """
        now = time.monotonic()
        return next((c for at, c in self._replaced if now - at < RECENT_S and wanted(c)), None)

    async def until(self, wanted: Callable[[ExtprocConfig], bool], timeout: float) -> ExtprocConfig:
        """The current config once `wanted` holds for it, or after `timeout` seconds the current one anyway.

        Envoy and the workers get a new config on separate streams: a route Envoy already has can
        name something this worker's config does not have yet. Waiting the few milliseconds until
        the worker catches up beats refusing a client with "retry shortly" for our own race.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not wanted(self.current):
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                break
        return self.current

    def accept(self, raw: bytes) -> bool:
        try:
            config = ExtprocConfig.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("rejected extproc config, keeping version %r: %s", self.current.version, exc)
            metrics.EXTPROC_CONFIG_REJECTED.inc()
            return False
        if self.current is not EMPTY:
            self._replaced = [(time.monotonic(), self.current), *self._replaced[: KEEP_REPLACED - 1]]
        self.current = config
        self.ready.set()
        self._changed.set()
        self._changed = asyncio.Event()
        metrics.EXTPROC_CONFIG_APPLIED.set_to_current_time()
        credentials.prefetch(config.providers.values())
        credentials.prefetch(guard_credentials(g for p in config.guards.values() for g in (*p.request, *p.response)))
        for listener in self.listeners:
            listener(config)
        log.info("extproc config version %s (%d providers)", config.version, len(config.providers))
        return True


async def watch_config(*, target: str, holder: ConfigHolder, worker: str, tls_dir: str | None = None) -> None:
    """Run forever: subscribe, apply each config, reconnect on failure.

    `tls_dir`: ca.crt, tls.crt, tls.key for mutual TLS (a Kubernetes data plane); None: plaintext, for
    `llmgw run`, whose channel is a Unix socket only its user can open.
    """
    delay = 0.1
    while True:
        try:
            channel = config_channel(target, tls_dir)
        except OSError as exc:  # the TLS files are not mounted (yet)
            log.warning("config channel TLS files: %s", exc)
        else:
            try:
                async for raw in watch(channel, worker):
                    holder.accept(raw)
                    delay = 0.1
            except (GRPCError, StreamTerminatedError, OSError) as exc:  # the control plane is away (restarting)
                log.debug("config channel: %s", exc)
            except Exception as exc:  # anything else: still reconnect, or this worker's config would freeze
                log.warning("config channel failed (%s: %s); reconnecting", type(exc).__name__, exc)
            finally:
                channel.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
