"""What a request cost in USD, from its normalized usage: computed once, where usage is emitted.

Prices come from `genai-prices` (Pydantic's maintained catalog: per provider,
with cache read/write prices and price history), chosen over `tokencost`
(a copy of LiteLLM's table, last released 2025-08, pulls tiktoken) and
`litellm` (a whole SDK for one JSON file). Its `calc_price` takes ~70 us, so
the per-million-token prices of a (provider, model) are looked up once and
cached; a request then costs a few multiplications. A model whose catalog
price is tiered (by context length) is priced by the library itself.

A manifest's `pricing` on an AIBackend provider (negotiated or self-hosted
prices) wins over the catalog (`ProviderConfig.pricing`).

`Price` is the contract's PriceConfig (USD per million tokens; cache prices
default to the input price). Usage conventions match genai-prices: `input` is every input token,
cache reads and writes included; reasoning tokens are part of `output`.
"""

from __future__ import annotations

import functools
import logging
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


def request_cost(*, usage: Usage | None, kind: str, model: str, overrides: tuple[Price, ...] = ()) -> float | None:
    """The USD cost of one request: a manifest override for `model`, else the catalog; None if unknown."""
    if usage is None or not model:
        return None
    for price in overrides:
        if price.model == model:
            return usd(usage, price)
    for price in overrides:
        if price.model is None:
            return usd(usage, price)
    found = catalog_price(kind, model)
    if found is None:
        return None
    if isinstance(found, Price):
        return usd(usage, found)
    return _tiered(found, usage)


@functools.lru_cache(maxsize=1024)
def catalog_price(kind: str, model: str) -> Price | Any | None:
    """The catalog's price of `model` at a provider of `kind`: a flat Price, the library's tiered price, or None."""
    try:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        _, info = snapshot.find_provider_model(model, None, CATALOG_PROVIDER.get(kind), None)
        from datetime import datetime

        mp = info.get_prices(datetime.now(UTC))
    except LookupError:
        log.info("no catalog price for model %r at a %s provider: its requests are not priced", model, kind)
        return None
    fields = [getattr(mp, name, None) for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")]
    if not all(v is None or isinstance(v, Decimal) for v in fields):
        return mp  # tiered: the library prices each request
    inp, out, read, write = (float(v) if v is not None else None for v in fields)
    return Price(input=inp or 0.0, output=out or 0.0, cache_read=read, cache_write=write)


def _tiered(model_price: Any, usage: Usage) -> float | None:
    from genai_prices import Usage as CatalogUsage

    calc = model_price.calc_price(
        CatalogUsage(
            input_tokens=usage.input or 0,
            output_tokens=usage.output or 0,
            cache_read_tokens=usage.cache_read or 0,
            cache_write_tokens=usage.cache_write or 0,
        )
    )
    return float(calc["total_price"])
