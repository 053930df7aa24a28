"""What a request cost in USD, from its normalized usage: computed once, where usage is emitted.

Prices come from `genai-prices` (Pydantic's maintained catalog: per provider,
with cache read/write prices and price history), chosen over `tokencost`
(a copy of LiteLLM's table, last released 2025-08, pulls tiktoken) and
`litellm` (a whole SDK for one JSON file). Its `calc_price` takes ~70 us, so
the per-million-token prices of a (provider, model) are looked up once and
cached (`CatalogPrice`, tiers by context length included); a request then costs
a few multiplications. The library lives in the control plane: a worker asks it
for a model's price once (extproc/prices.py), instead of each worker importing
genai-prices and pydantic (~15 MiB each).

A manifest's `pricing` on an AIBackend provider (negotiated or self-hosted
prices) wins over the catalog (`ProviderConfig.pricing`).

`Price` is the contract's PriceConfig (USD per million tokens; cache prices
default to the input price). Usage conventions match genai-prices: `input` is every input token,
cache reads and writes included; reasoning tokens are part of `output`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any

from extproc.contract import PriceConfig as Price
from extproc.usage import Usage

log = logging.getLogger("llmgw.extproc.cost")

# AIBackend provider kind -> genai-prices provider id (None: guess from the model name).
CATALOG_PROVIDER: dict[str, str | None] = {
    "openai": "openai",
    "azureopenai": "azure",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "vertexai": "google",
    "bedrock": "aws",
    "custom": None,
}
_MTOK = 1_000_000


def usd(usage: Usage | None, price: Price) -> float | None:
    """The cost of `usage` at `price`; None when the provider reported no token counts."""
    if usage is None or (usage.input is None and usage.output is None):
        return None
    total_in = usage.input or 0
    read = usage.cache_read or 0
    write = usage.cache_write or 0
    plain = max(0, total_in - read - write)
    cost = plain * price.input + (usage.output or 0) * price.output
    cost += read * (price.cache_read if price.cache_read is not None else price.input)
    cost += write * (price.cache_write if price.cache_write is not None else price.input)
    return cost / _MTOK


def request_cost(
    *,
    usage: Usage | None,
    kind: str,
    model: str,
    overrides: tuple[Price, ...] = (),
    catalog: Callable[[str, str], CatalogPrice | None] | None = None,
) -> float | None:
    """The USD cost of one request: a manifest override for `model`, else the catalog; None if unknown.

    `catalog`: where catalog prices come from (a worker's PriceBook asks the control plane);
    None: the catalog in this process (`lookup_catalog`).
    """
    if usage is None or not model:
        return None
    for price in overrides:
        if price.model == model:
            return usd(usage, price)
    for price in overrides:
        if price.model is None:
            return usd(usage, price)
    found = (catalog or lookup_catalog)(kind, model)
    return catalog_usd(usage, found) if found is not None else None


@dataclass(frozen=True)
class Rate:
    """USD per million tokens of one kind. Tiers as genai-prices has them (the "cliff" model): when the
    request's input tokens exceed a tier's start, every token of this kind pays that tier's price."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()  # (start, price), ascending

    def at(self, total_input: int) -> float:
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base

    def to_json(self) -> float | dict[str, Any]:
        return {"base": self.base, "tiers": [list(t) for t in self.tiers]} if self.tiers else self.base

    @classmethod
    def from_json(cls, raw: object) -> Rate:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return cls(base=float(raw))
        if not isinstance(raw, dict) or not isinstance(raw.get("base"), int | float):
            raise ValueError(f"not a rate: {raw!r}")
        tiers = tuple((int(start), float(price)) for start, price in raw.get("tiers", ()))
        return cls(base=float(raw["base"]), tiers=tuple(sorted(tiers)))


@dataclass(frozen=True)
class CatalogPrice:
    """A model's catalog price, as the control plane sends it to the workers (`wire.CONFIG_PRICE_METHOD`)."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None  # None: cache reads pay the input price
    cache_write: Rate | None = None  # None: cache writes pay the input price

    def to_json(self) -> dict[str, Any]:
        fields = {"input": self.input, "output": self.output, "cache_read": self.cache_read}
        fields["cache_write"] = self.cache_write
        return {k: v.to_json() for k, v in fields.items() if v is not None}

    @classmethod
    def from_json(cls, doc: object) -> CatalogPrice:
        if not isinstance(doc, dict):
            raise ValueError(f"not a price: {doc!r}")
        read, write = doc.get("cache_read"), doc.get("cache_write")
        return cls(
            input=Rate.from_json(doc.get("input", 0)),
            output=Rate.from_json(doc.get("output", 0)),
            cache_read=Rate.from_json(read) if read is not None else None,
            cache_write=Rate.from_json(write) if write is not None else None,
        )


def catalog_usd(usage: Usage, price: CatalogPrice) -> float | None:
    """`usd` at a catalog price: each rate at the tier the request's input tokens select."""
    total_in = usage.input or 0

    def rate(r: Rate | None) -> float | None:
        return r.at(total_in) if r is not None else None

    flat = Price(
        input=price.input.at(total_in),
        output=price.output.at(total_in),
        cache_read=rate(price.cache_read),
        cache_write=rate(price.cache_write),
    )
    return usd(usage, flat)


@functools.lru_cache(maxsize=1024)
def lookup_catalog(kind: str, model: str) -> CatalogPrice | None:
    """The catalog's price of `model` at a provider of `kind`, or None.

    genai-prices (with pydantic) is imported here, on the first lookup: ~15 MiB of RSS, which
    is why workers ask the control plane (extproc/prices.py) instead of calling this themselves.
    """
    try:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        _, info = snapshot.find_provider_model(model, None, CATALOG_PROVIDER.get(kind), None)
        from datetime import datetime

        mp = info.get_prices(datetime.now(UTC))
    except LookupError:
        log.info("no catalog price for model %r at a %s provider: its requests are not priced", model, kind)
        return None
    rates = [
        _rate(getattr(mp, name, None)) for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    ]
    inp, out, read, write = rates
    return CatalogPrice(input=inp or Rate(0.0), output=out or Rate(0.0), cache_read=read, cache_write=write)


def warm_catalog() -> None:
    """Load the catalog now (~0.15 s, in a thread), so the first question a worker asks is not the slow one."""
    try:
        from genai_prices import data_snapshot

        data_snapshot.get_snapshot()
    except Exception:  # the lookups say why, each time they are asked
        log.exception("loading the price catalog failed")


def _rate(value: Any) -> Rate | None:
    """A genai-prices price field (Decimal, TieredPrices or None) as a Rate."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return Rate(base=float(value))
    tiers = tuple((int(t.start), float(t.price)) for t in value.tiers)
    return Rate(base=float(value.base), tiers=tuple(sorted(tiers)))
