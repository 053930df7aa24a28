"""Catalog prices asked of the control plane (extproc/prices.py, controlplane/configchannel.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from controlplane.configchannel import ConfigChannel
from extproc import prices
from extproc.config_rpc import config_channel
from extproc.cost import CatalogPrice, Rate, lookup_catalog
from extproc.prices import PriceBook, channel_fetch
from extproc.router_stage import RouterRequest
from extproc.usage import Usage
from tests.extproc_protos import GATEWAY, make_config

MINI = CatalogPrice(input=Rate(0.15), output=Rate(0.6), cache_read=Rate(0.075))


def test_the_control_plane_answers_what_its_catalog_says(tmp_path: Path) -> None:
    async def run() -> list[CatalogPrice | None]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((ConfigChannel().handler(),))
        target = f"unix:{tmp_path / 'cp.sock'}"
        server.add_insecure_port(target)
        await server.start()
        try:
            fetch = channel_fetch(lambda: config_channel(target, None))
            return [await fetch("openai", "gpt-4o-mini"), await fetch("openai", "no-such-model-xyz")]
        finally:
            await server.stop(None)

    assert asyncio.run(run()) == [lookup_catalog("openai", "gpt-4o-mini"), None]


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"kind": "openai", "model": ""}', b'{"kind": 1, "model": "m"}'])
def test_a_question_that_is_not_one_gets_no_price(raw: bytes) -> None:
    assert prices.decode_question(raw) is None
    assert prices.decode_question(b'{"kind": "openai", "model": "' + b"m" * 300 + b'"}') is None


def test_the_book_asks_once_per_model_and_waits_after_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    down = {"now": True}

    async def fetch(kind: str, model: str) -> CatalogPrice | None:
        asked.append((kind, model))
        if down["now"]:
            raise ConnectionError("control plane unreachable")
        return MINI if model == "gpt-4o-mini" else None

    book = PriceBook(fetch=fetch)
    clock = {"t": 1000.0}
    monkeypatch.setattr(prices.time, "monotonic", lambda: clock["t"])

    async def run() -> None:
        await book.ensure("openai", "gpt-4o-mini")  # fails: not known, not retried for a while
        await book.ensure("openai", "gpt-4o-mini")
        assert not book.knows("openai", "gpt-4o-mini") and len(asked) == 1
        down["now"] = False
        clock["t"] += prices.RETRY_AFTER_S
        await book.ensure("openai", "gpt-4o-mini")
        await book.ensure("openai", "no-such-model")
        await book.ensure("openai", "gpt-4o-mini")  # known: not asked again

    asyncio.run(run())
    assert asked == [("openai", "gpt-4o-mini")] * 2 + [("openai", "no-such-model")]
    assert book.get("openai", "gpt-4o-mini") == MINI
    assert book.knows("openai", "no-such-model") and book.get("openai", "no-such-model") is None


def test_a_response_model_not_asked_about_yet_is_priced_at_the_request_models_price() -> None:
    async def fetch(kind: str, model: str) -> CatalogPrice | None:
        return MINI

    book = PriceBook(fetch=fetch)
    rr = RouterRequest(gateway=GATEWAY, config=make_config(), prices=book)
    rr.provider, rr.request_model, rr.response_model = "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
    rr.usage = Usage(input=1_000_000, output=1_000_000)
    assert rr.price_to_ask() == ("openai", "gpt-4o-mini")
    asyncio.run(book.ensure("openai", "gpt-4o-mini"))
    assert rr.price_to_ask() is None
    rr._settle_limits()
    assert rr.cost_usd == pytest.approx(0.75)
    assert rr.price_wanted == ("openai", "gpt-4o-mini-2024-07-18")  # the server asks after the response
