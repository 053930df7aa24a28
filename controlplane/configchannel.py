"""The control plane side of the extproc config channel.

A server-streaming gRPC method on the ADS server's port, with raw bytes as
messages (the JSON of `extproc.contract.ExtprocConfig`), so no extra proto
has to be compiled. A worker receives the current config at once and every
later one; if the control plane goes away the worker keeps its last config.
`Price` answers a worker's question for a model's catalog price (extproc/prices.py):
the catalog is loaded in this one process rather than in every worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from extproc import prices, wire
from extproc.contract import ExtprocConfig
from extproc.cost import lookup_catalog, warm_catalog

log = logging.getLogger("llmgw.configchannel")

SERVICE = wire.CONFIG_SERVICE


class ConfigChannel:
    def __init__(self) -> None:
        self._config: ExtprocConfig | None = None
        self._encoded: bytes = b""
        self._changed = asyncio.Condition()
        self.watchers = 0

    async def publish(self, config: ExtprocConfig) -> None:
        _warm_catalog_once()
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
                ),
                "Price": PRICE_HANDLER,
            },
        )


_warming: list[asyncio.Task[None]] = []


def _warm_catalog_once() -> None:
    """Load the price catalog in the background when the first config is published (once per process)."""
    if not _warming:
        _warming.append(asyncio.get_running_loop().create_task(asyncio.to_thread(warm_catalog)))


async def answer_price(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """A worker's question: the catalog price of a model (extproc/prices.py). Public data, no gateway's:
    any worker that may open the channel may ask. The catalog is imported on the first question, in a
    thread, so the xDS and config streams keep being served meanwhile."""
    question = prices.decode_question(request)
    price = await asyncio.to_thread(lookup_catalog, *question) if question is not None else None
    return prices.encode_answer(price)


PRICE_HANDLER = grpc.unary_unary_rpc_method_handler(answer_price, request_deserializer=None, response_serializer=None)
