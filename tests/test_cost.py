"""Request cost: catalog prices (genai-prices) with cache reads, manifest overrides, unknown models unpriced."""

from __future__ import annotations

import orjson
import pytest

from extproc.cost import CatalogPrice, Price, Rate, catalog_usd, lookup_catalog, request_cost, usd
from extproc.usage import Usage


def test_catalog_price_with_cached_input_matches_the_library() -> None:
    from genai_prices import Usage as CatalogUsage
    from genai_prices import calc_price

    usage = Usage(input=1000, output=500, cache_read=200)
    expected = calc_price(
        CatalogUsage(input_tokens=1000, cache_read_tokens=200, output_tokens=500), "gpt-4o-mini", provider_id="openai"
    ).total_price
    assert request_cost(usage=usage, kind="openai", model="gpt-4o-mini") == pytest.approx(float(expected))


def test_anthropic_cache_write_is_priced() -> None:
    plain = request_cost(usage=Usage(input=1000, output=0), kind="anthropic", model="claude-3-5-haiku-latest")
    written = request_cost(
        usage=Usage(input=1000, output=0, cache_write=1000), kind="anthropic", model="claude-3-5-haiku-latest"
    )
    assert plain is not None and written is not None and written > plain


def test_override_for_the_model_wins_then_the_provider_default() -> None:
    usage = Usage(input=2_000_000, output=1_000_000)
    overrides = (Price(input=1.0, output=2.0), Price(input=0.1, output=0.2, model="llama-local"))
    assert request_cost(usage=usage, kind="custom", model="llama-local", overrides=overrides) == pytest.approx(0.4)
    assert request_cost(usage=usage, kind="custom", model="other", overrides=overrides) == pytest.approx(4.0)


def test_unknown_model_and_missing_usage_are_unpriced() -> None:
    assert lookup_catalog("custom", "no-such-model-xyz") is None
    assert request_cost(usage=Usage(input=1, output=1), kind="openai", model="no-such-model-xyz") is None
    assert request_cost(usage=None, kind="openai", model="gpt-4o-mini") is None
    assert usd(Usage(), Price(input=1, output=1)) is None


def test_cache_prices_default_to_the_input_price() -> None:
    assert usd(Usage(input=1_000_000, output=0, cache_read=500_000), Price(input=2, output=0)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kind", "model", "provider_id"), [("openai", "gpt-5.4", "openai"), ("anthropic", "claude-haiku-5-5", "anthropic")]
)
@pytest.mark.parametrize("input_tokens", [1_000, 99_999, 100_001, 272_001, 400_000])
def test_tiered_catalog_prices_match_the_library(kind: str, model: str, provider_id: str, input_tokens: int) -> None:
    """Above a tier's start (input tokens), every token pays the tier's price, as genai-prices computes it."""
    from genai_prices import Usage as CatalogUsage
    from genai_prices import calc_price

    price = lookup_catalog(kind, model)
    assert price is not None and price.input.tiers  # the catalog prices this model by context length
    usage = Usage(input=input_tokens, output=2_000, cache_read=500)
    expected = calc_price(
        CatalogUsage(input_tokens=input_tokens, cache_read_tokens=500, output_tokens=2_000),
        model,
        provider_id=provider_id,
    ).total_price
    assert catalog_usd(usage, price) == pytest.approx(float(expected))


def test_catalog_price_travels_as_json_unchanged() -> None:
    """What the control plane sends a worker (extproc/prices.py) is the price it looked up."""
    price = CatalogPrice(input=Rate(2.5, ((272_000, 5.0),)), output=Rate(15.0), cache_read=Rate(0.25))
    assert CatalogPrice.from_json(orjson.loads(orjson.dumps(price.to_json()))) == price
    for model in ("gpt-4o-mini", "gpt-5.4", "claude-haiku-5-5"):
        found = lookup_catalog("openai" if model.startswith("gpt") else "anthropic", model)
        assert found is not None and CatalogPrice.from_json(orjson.loads(orjson.dumps(found.to_json()))) == found


@pytest.mark.parametrize("raw", [None, "1", {"base": "x"}, {"tiers": []}, True, [1]])
def test_a_malformed_rate_is_refused(raw: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        Rate.from_json(raw)
