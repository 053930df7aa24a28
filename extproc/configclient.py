"""The worker side of the config channel: keep the newest good config, survive restarts.

A config that fails to decode is rejected with a log line and the last good
one stays (DESIGN convention 7). While the control plane is away the worker
keeps serving and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from extproc import credentials, metrics, wire
from extproc.contract import EMPTY, ExtprocConfig
from extproc.policies.guards.remote import credential_views as guard_credentials

log = logging.getLogger("llmgw.extproc.config")


class ConfigHolder:
    def __init__(self) -> None:
        self.current: ExtprocConfig = EMPTY
        self.ready = asyncio.Event()
        # Called with each accepted config, on the event loop (e.g. the picker's scraping starts).
        self.listeners: list[Callable[[ExtprocConfig], None]] = []

    def accept(self, raw: bytes) -> bool:
        try:
            config = ExtprocConfig.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("rejected extproc config, keeping version %r: %s", self.current.version, exc)
            metrics.EXTPROC_CONFIG_REJECTED.inc()
            return False
        self.current = config
        self.ready.set()
        metrics.EXTPROC_CONFIG_APPLIED.set_to_current_time()
        credentials.prefetch(config.providers.values())
        credentials.prefetch(guard_credentials(g for p in config.guards.values() for g in (*p.request, *p.response)))
        for listener in self.listeners:
            listener(config)
        log.info("extproc config version %s (%d providers)", config.version, len(config.providers))
        return True


async def watch_config(*, target: str, holder: ConfigHolder, worker: str) -> None:
    """Run forever: subscribe, apply each config, reconnect on failure."""
    delay = 0.1
    while True:
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                call = channel.unary_stream(
                    wire.CONFIG_WATCH_METHOD, request_serializer=None, response_deserializer=None
                )
                async for raw in call(worker.encode()):
                    holder.accept(raw)
                    delay = 0.1
        except grpc.aio.AioRpcError as exc:
            log.debug("config channel: %s", exc.code())
        except asyncio.CancelledError:
            raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
