"""A worker's catalog prices, asked of the control plane once per (provider kind, model).

The catalog (genai-prices, extproc/cost.py) costs a process ~15 MiB of RSS once
imported; in the control plane it is paid once per gateway instead of once per
worker. Pricing must not wait on the request path, so the router stage reads
prices from this book synchronously, and the server fills it in the async
gaps: before it answers the response headers (the request's model, on first
sight: one round trip on the config channel's Unix socket, once per model) and
after the last answer of a response (a response model seen for the first time,
priced meanwhile at its request model's price, which the catalog gives dated
variants anyway).

A failed lookup (control plane unreachable) is not retried for `RETRY_AFTER_S`,
so an outage costs each new model one timeout, not every request; its requests
are unpriced meanwhile (metrics and budgets see no cost), and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from grpclib.client import Channel

from extproc import wire
from extproc.config_rpc import ask
from extproc.cost import CatalogPrice, lookup_catalog

log = logging.getLogger("llmgw.extproc.prices")

Fetch = Callable[[str, str], Awaitable[CatalogPrice | None]]
RETRY_AFTER_S = 30.0
LOOKUP_TIMEOUT_S = 2.0


class PriceBook:
    """(kind, model) -> CatalogPrice, or None when the catalog has no price for it.

    `fetch`: how to ask for a price not yet in the book; None looks it up in this
    process (tests, tools, a worker without a control plane).
    """

    def __init__(self, fetch: Fetch | None = None) -> None:
        self._fetch = fetch
        self._known: dict[tuple[str, str], CatalogPrice | None] = {}
        self._failed_at: dict[tuple[str, str], float] = {}

    def knows(self, kind: str, model: str) -> bool:
        return self._fetch is None or (kind, model) in self._known

    def get(self, kind: str, model: str) -> CatalogPrice | None:
        """The price if the book has it; None both when the catalog has none and when not asked yet."""
        if self._fetch is None:
            return lookup_catalog(kind, model)
        return self._known.get((kind, model))

    async def ensure(self, kind: str, model: str) -> None:
        """Ask for the price of (kind, model) unless the book has it or asked and failed lately."""
        key = (kind, model)
        if self._fetch is None or key in self._known or not model:
            return
        failed = self._failed_at.get(key)
        if failed is not None and time.monotonic() - failed < RETRY_AFTER_S:
            return
        try:
            self._known[key] = await self._fetch(kind, model)
        except Exception as exc:
            self._failed_at[key] = time.monotonic()
            log.warning("no price for model %r at a %s provider yet (control plane: %s)", model, kind, exc)
        else:
            self._failed_at.pop(key, None)


def channel_fetch(channel: Callable[[], Channel]) -> Fetch:
    """Ask the control plane on the config channel (`wire.CONFIG_PRICE_METHOD`); `channel` opens it once."""
    opened: list[Channel] = []

    async def fetch(kind: str, model: str) -> CatalogPrice | None:
        if not opened:
            opened.append(channel())
        question = orjson.dumps({"kind": kind, "model": model})
        raw = await ask(opened[0], wire.CONFIG_PRICE_METHOD, question, timeout=LOOKUP_TIMEOUT_S)
        doc = orjson.loads(raw)
        return CatalogPrice.from_json(doc["price"]) if doc.get("price") is not None else None

    return fetch


def encode_answer(price: CatalogPrice | None) -> bytes:
    """The control plane's answer to a price lookup (controlplane/configchannel.py)."""
    return orjson.dumps({"price": price.to_json() if price is not None else None})


def decode_question(raw: bytes) -> tuple[str, str] | None:
    """(kind, model) from a price lookup, or None when it is not one (bounded: model ids are short)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    kind, model = doc.get("kind"), doc.get("model")
    if not isinstance(kind, str) or not isinstance(model, str) or not model or len(model) > 256 or len(kind) > 64:
        return None
    return kind, model


LOCAL_PRICES = PriceBook()  # this process's own catalog (tests and tools; a worker has its own book)
