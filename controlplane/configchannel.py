"""The control plane side of the extproc config channel.

A server-streaming gRPC method on the ADS server's port, with raw bytes as
messages (the JSON of `extproc.contract.ExtprocConfig`), so no extra proto
has to be compiled. A worker receives the current config at once and every
later one; if the control plane goes away the worker keeps its last config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from extproc import wire
from extproc.contract import ExtprocConfig

log = logging.getLogger("llmgw.configchannel")

SERVICE = wire.CONFIG_SERVICE


class ConfigChannel:
    def __init__(self) -> None:
        self._config: ExtprocConfig | None = None
        self._encoded: bytes = b""
        self._changed = asyncio.Condition()
        self.watchers = 0

    async def publish(self, config: ExtprocConfig) -> None:
        async with self._changed:
            self._config = config
            self._encoded = config.to_json()
            self._changed.notify_all()

    async def _watch(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self.watchers += 1
        sent = b""
        try:
            while True:
                async with self._changed:
                    while self._encoded == sent:
                        await self._changed.wait()
                    sent = self._encoded
                yield sent
        finally:
            self.watchers -= 1

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self._watch, request_deserializer=None, response_serializer=None
                )
            },
        )
