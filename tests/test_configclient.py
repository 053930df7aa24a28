"""The extproc's config holder (`extproc.configclient.ConfigHolder`): accepts a config, keeps the last good one."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from extproc import configclient
from extproc.configclient import ConfigHolder
from extproc.contract import ExtprocConfig
from tests.extproc_protos import make_config


def test_config_holder_accepts_and_round_trips() -> None:
    holder = ConfigHolder()
    config = make_config(model="m", path="/p")
    assert holder.accept(config.to_json()) is True
    assert holder.current == config
    assert holder.ready.is_set()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"{}",
        b'{"contract": 99, "version": "v2"}',
        b'{"contract": 1}',
        b'{"contract": 1, "version": "v2", "providers": {"p": {"id": "p", "bogus": 1}}}',
    ],
    ids=["not-json", "empty", "contract", "no-version", "bad-provider"],
)
def test_config_holder_keeps_last_good(garbage: bytes) -> None:
    holder = ConfigHolder()
    good = make_config()
    assert holder.accept(good.to_json())
    assert holder.accept(garbage) is False
    assert holder.current == good


@pytest.mark.parametrize(
    "garbage", [b"[]", b"null", b'"x"', b'{"contract": 1, "version": "v2", "providers": []}'], ids=repr
)
def test_config_holder_keeps_last_good_on_wrong_json_shapes(garbage: bytes) -> None:
    holder = ConfigHolder()
    good = make_config()
    assert holder.accept(good.to_json())
    assert holder.accept(garbage) is False
    assert holder.current == good


def test_until_returns_the_config_that_arrives_while_waiting() -> None:
    # Envoy may route to something (a new authentication) before this worker's config has it.
    holder = ConfigHolder()
    assert holder.accept(make_config().to_json())
    newer = dataclasses.replace(make_config(), version="v2")

    async def main() -> str:
        waiting = asyncio.ensure_future(holder.until(lambda c: c.version == "v2", timeout=5))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert holder.accept(newer.to_json())
        return (await waiting).version

    assert asyncio.run(main()) == newer.version


def test_until_gives_up_after_its_timeout_with_the_current_config() -> None:
    holder = ConfigHolder()
    current = make_config()
    assert holder.accept(current.to_json())
    assert asyncio.run(holder.until(lambda _c: False, timeout=0.01)) == current


def test_recent_finds_a_replaced_config_for_a_short_while(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker can be ahead of Envoy: a request Envoy routed by the previous config is served by it.
    clock = {"t": 100.0}
    monkeypatch.setattr(configclient.time, "monotonic", lambda: clock["t"])
    holder = ConfigHolder()
    old = dataclasses.replace(make_config(), version="old")
    assert holder.accept(old.to_json())
    assert holder.recent(lambda c: c.version == "old") is None  # the current one is not "recent"
    assert holder.accept(dataclasses.replace(make_config(), version="new").to_json())
    assert holder.recent(lambda c: c.version == "old") == old
    clock["t"] += configclient.RECENT_S
    assert holder.recent(lambda c: c.version == "old") is None


def test_the_watcher_reconnects_after_an_unexpected_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the control plane being away: any failure of the stream reconnects, the config keeps coming."""
    config = make_config(model="after-the-failure")
    calls = {"n": 0}

    async def watch(channel: object, worker: str) -> AsyncIterator[bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a failure no handler names")
        yield config.to_json()
        await asyncio.Event().wait()  # the stream stays open

    monkeypatch.setattr(configclient, "watch", watch)
    monkeypatch.setattr(configclient, "config_channel", lambda target, tls_dir: _Closable())

    async def main() -> ExtprocConfig:
        holder = ConfigHolder()
        task = asyncio.create_task(configclient.watch_config(target="unix:/nowhere", holder=holder, worker="w"))
        try:
            await asyncio.wait_for(holder.ready.wait(), 30)  # a bound for a hang, not a timing
        finally:
            task.cancel()
        return holder.current

    assert asyncio.run(main()) == config
    assert calls["n"] == 2


class _Closable:
    def close(self) -> None:
        pass
