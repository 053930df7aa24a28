"""The limits store: the same bucket semantics on SQLite and on a real Redis; failures are StoreUnavailable."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.store import Bucket, Store, StoreUnavailable, open_store
from extproc.store.redis import RedisStore
from extproc.store.sqlite import SqliteStore
from tests.fakes.redis_server import RedisServer
from tests.harness import free_port


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite:{tmp_path / 'limits.db'}"


def _bucket(key: str, *, capacity: float = 3, burst: float = 0, window: int = 100) -> Bucket:
    return Bucket(key=f"{key}-{id(object())}", capacity=capacity, burst=burst, window=window, ttl_s=60)


async def _with(url: str, body):  # type: ignore[no-untyped-def]
    store = open_store(url)
    try:
        return await body(store)
    finally:
        await store.close()


def test_take_until_empty_then_refill_next_window(store_url: str) -> None:
    async def body(store: Store) -> list[object]:
        b = _bucket("req")
        out: list[object] = [(await store.take([b], need=[1], take=[1])).allowed for _ in range(4)]
        nxt = Bucket(key=b.key, capacity=b.capacity, burst=0, window=b.window + 1, ttl_s=60)
        out.append((await store.take([nxt], need=[1], take=[1])).levels)
        return out

    assert asyncio.run(_with(store_url, body)) == [True, True, True, False, (2.0,)]


def test_refused_take_takes_nothing_from_any_bucket(store_url: str) -> None:
    async def body(store: Store) -> tuple[bool, tuple[float, ...]]:
        wide, narrow = _bucket("wide", capacity=10), _bucket("narrow", capacity=1)
        await store.take([narrow], need=[1], take=[1])
        refused = await store.take([wide, narrow], need=[1, 1], take=[1, 1])
        return refused.allowed, (await store.take([wide], need=[0], take=[0])).levels

    assert asyncio.run(_with(store_url, body)) == (False, (10.0,))


def test_charge_goes_below_zero_and_windows_pay_it_back(store_url: str) -> None:
    async def body(store: Store) -> list[object]:
        b = _bucket("tokens", capacity=100)
        out: list[object] = [await store.charge([b], amounts=[250])]
        later = Bucket(key=b.key, capacity=100, burst=0, window=b.window + 2, ttl_s=60)
        out.append((await store.take([later], need=[1], take=[0])).allowed)  # -150 + 200 = 50
        out.append((await store.take([later], need=[60], take=[0])).allowed)
        return out

    assert asyncio.run(_with(store_url, body)) == [(-150.0,), True, False]


def test_burst_holds_unused_capacity_up_to_the_ceiling(store_url: str) -> None:
    async def body(store: Store) -> tuple[float, ...]:
        b = _bucket("burst", capacity=2, burst=3)
        await store.take([b], need=[1], take=[5])  # a fresh bucket starts full: 5, now 0
        far = Bucket(key=b.key, capacity=2, burst=3, window=b.window + 10, ttl_s=60)
        return (await store.take([far], need=[0], take=[0])).levels

    assert asyncio.run(_with(store_url, body)) == (5.0,)


def test_usd_amounts_keep_their_fractions(store_url: str) -> None:
    async def body(store: Store) -> tuple[float, ...]:
        b = _bucket("usd", capacity=0.01)
        await store.charge([b], amounts=[0.000435])
        return await store.charge([b], amounts=[0.000001])

    (level,) = asyncio.run(_with(store_url, body))
    assert level == pytest.approx(0.01 - 0.000436, abs=1e-12)


def _hammer(url: str, key: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def body(store: Store) -> int:
        bucket = Bucket(key=key, capacity=50, burst=0, window=7, ttl_s=60)
        return sum([(await store.take([bucket], need=[1], take=[1])).allowed for _ in range(n)])

    out.put(asyncio.run(_with(url, body)))


def test_exact_across_processes(store_url: str) -> None:
    """Four processes take from one bucket of 50: exactly 50 succeed."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    key = f"shared-{free_port()}"
    procs = [ctx.Process(target=_hammer, args=(store_url, key, 40, out)) for _ in range(4)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(counts) == 50


def _open_at_once(path: str, barrier: Any, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait()
    try:
        asyncio.run(SqliteStore(path).close())
        out.put("")
    except Exception as exc:
        out.put(repr(exc))


def test_sqlite_workers_opening_a_new_file_at_once_all_open(tmp_path: Path) -> None:
    """A fresh gateway's workers set the file up together; none of them dies of "database is locked".

    (SQLite refuses one of two readers that both switch the file to WAL at once, busy timeout or not:
    before the fix about one start in ten of three workers lost one.)
    """
    ctx = multiprocessing.get_context("fork")
    errors: list[str] = []
    for attempt in range(40):
        path = str(tmp_path / f"limits-{attempt}.db")
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, out)) for _ in range(4)]
        for p in procs:
            p.start()
        errors += [e for e in (out.get(timeout=30) for _ in procs) if e]
        for p in procs:
            p.join(10)
    assert errors == []


def test_sqlite_windows_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "limits.db"
    b = Bucket(key="k", capacity=2, burst=0, window=1, ttl_s=60)
    first = SqliteStore(path)
    assert first.take_sync([b], need=[1], take=[2]).allowed
    asyncio.run(first.close())
    again = SqliteStore(path)
    assert not again.take_sync([b], need=[1], take=[1]).allowed
    asyncio.run(again.close())


def test_redis_down_is_unavailable_quickly() -> None:
    async def body() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        try:
            with pytest.raises(StoreUnavailable, match="redis store"):
                await store.take([_bucket("x")], need=[1], take=[1])
        finally:
            await store.close()

    asyncio.run(body())


def test_store_url_is_checked_and_never_logged_with_its_password() -> None:
    from extproc.store import describe

    with pytest.raises(ValueError, match="sqlite:PATH or redis"):
        open_store("memcached://x")
    assert describe("redis://user:hunter2@redis:6379/0") == "redis://***@redis:6379/0"


def test_sqlite_waits_for_another_workers_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    """Another process holds the write lock: the take waits from the event loop (other coroutines
    run meanwhile) and completes once the lock is released."""
    import sqlite3

    path = tmp_path / "limits.db"
    store = SqliteStore(path)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def body() -> tuple[bool, int]:
        ticks = 0
        task = asyncio.ensure_future(store.take([_bucket("locked")], need=[1], take=[1]))
        while ticks < 20:
            await asyncio.sleep(0)
            ticks += 1
        assert not task.done()  # still waiting for the lock, while this coroutine ran
        other.execute("COMMIT")
        return (await task).allowed, ticks

    try:
        assert asyncio.run(body()) == (True, 20)
    finally:
        other.close()
        asyncio.run(store.close())


def test_sqlite_locked_for_too_long_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from extproc.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "LOCK_WAIT_S", 0.05)
    path = tmp_path / "limits.db"
    store = SqliteStore(path)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked for more than"):
            asyncio.run(store.take([_bucket("stuck")], need=[1], take=[1]))
    finally:
        other.execute("ROLLBACK")
        other.close()
        asyncio.run(store.close())
