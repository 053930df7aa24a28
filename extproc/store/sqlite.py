"""The default store: one SQLite file shared by the workers of one gateway, no server.

WAL mode and `BEGIN IMMEDIATE`: a take or charge is one short write
transaction, serialized across processes by SQLite's lock, so every worker
sees every other's charges at once (exact, unlike per-process counters).
The file lives in the run directory (`llmgw run --run-dir`), outside the
`state/` folder that is wiped on start, so windows survive a restart.

A transaction runs synchronously on the event loop: it is tens of
microseconds (bench: `python -m extproc.store.sqlite DB`), far less than a
thread hop. Waiting for another worker's lock must not block the loop,
though: SQLite's own busy handler sleeps in milliseconds, inside the call. So
`busy_timeout` is 0, and a locked database is retried from the loop with
short asyncio sleeps (yielding first, then 0.1 ms doubling to 5 ms), at most
`LOCK_WAIT_S`, after which the store counts as unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from extproc.store.base import Bucket, StoreUnavailable, Taken, refill

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY,
    level REAL NOT NULL,
    window INTEGER NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID
"""
LOCK_WAIT_S = 2.0
OPEN_WAIT_S = 10.0  # how long a worker's start waits for the others to set the file up
_FIRST_BACKOFF_S = 0.0001
_MAX_BACKOFF_S = 0.005
SWEEP_EVERY = 4096  # operations between removals of expired buckets


def _set_up(db: sqlite3.Connection) -> None:
    """WAL mode and the table, waiting for the other workers that open the same new file at once.

    The busy timeout does not cover it: when two connections that both read the file want
    to switch it to WAL, SQLite answers one "database is locked" at once rather than let
    them deadlock (a fresh gateway's workers hit this about one start in ten). Blocking
    is fine here: the worker does not serve until its store is open.
    """
    deadline = time.monotonic() + OPEN_WAIT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash, not a power cut
            db.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")  # opening only: WAL setup may wait for another worker
        _set_up(self._db)
        self._db.execute("PRAGMA busy_timeout=0")  # a locked database is retried from the loop (_retry)
        self._ops = 0

    async def take(self, buckets: Sequence[Bucket], *, need: Sequence[float], take: Sequence[float]) -> Taken:
        return await _retry(lambda: self.take_sync(buckets, need=need, take=take))

    async def charge(self, buckets: Sequence[Bucket], *, amounts: Sequence[float]) -> tuple[float, ...]:
        return await _retry(lambda: self.charge_sync(buckets, amounts=amounts))

    def take_sync(self, buckets: Sequence[Bucket], *, need: Sequence[float], take: Sequence[float]) -> Taken:
        with self._transaction():
            levels = self._levels(buckets)
            if any(level < n for level, n in zip(levels, need, strict=True)):
                return Taken(allowed=False, levels=tuple(levels))
            after = tuple(level - t for level, t in zip(levels, take, strict=True))
            self._write(buckets, after)
            return Taken(allowed=True, levels=after)

    def charge_sync(self, buckets: Sequence[Bucket], *, amounts: Sequence[float]) -> tuple[float, ...]:
        with self._transaction():
            levels = self._levels(buckets)
            after = tuple(
                min(b.ceiling, level - a) for b, level, a in zip(buckets, levels, amounts, strict=True)
            )  # a refund (negative amount) never fills a bucket past its ceiling
            self._write(buckets, after)
            return after

    async def close(self) -> None:
        self._db.close()

    # --- internals ---------------------------------------------------------------------------

    def _transaction(self) -> _Immediate:
        self._ops += 1
        if self._ops % SWEEP_EVERY == 0:
            with contextlib.suppress(sqlite3.Error):  # another worker holds the lock: sweep next time
                self._db.execute("DELETE FROM buckets WHERE expires < ?", (time.time(),))
        return _Immediate(self._db)

    def _levels(self, buckets: Sequence[Bucket]) -> list[float]:
        out = []
        for b in buckets:
            row = self._db.execute("SELECT level, window FROM buckets WHERE key = ?", (b.key,)).fetchone()
            out.append(refill(row[0], row[1], b) if row else b.ceiling)
        return out

    def _write(self, buckets: Sequence[Bucket], levels: Sequence[float]) -> None:
        now = time.time()
        self._db.executemany(
            "INSERT INTO buckets (key, level, window, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET level = excluded.level, "
            "window = max(window, excluded.window), expires = excluded.expires",
            [(b.key, level, b.window, now + b.ttl_s) for b, level in zip(buckets, levels, strict=True)],
        )


class _Locked(Exception):
    """Another worker holds the write lock: retry shortly (never seen outside this module)."""


T = TypeVar("T")


async def _retry(op: Callable[[], T]) -> T:
    """`op`, retried while another worker holds the lock, without blocking the event loop."""
    deadline = time.monotonic() + LOCK_WAIT_S
    delay = 0.0
    while True:
        try:
            return op()
        except _Locked as exc:
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"sqlite store: locked for more than {LOCK_WAIT_S:g} s") from exc
        await asyncio.sleep(delay)
        delay = min(_MAX_BACKOFF_S, delay * 2 if delay else _FIRST_BACKOFF_S)


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); a lock held elsewhere is _Locked, other
    SQLite errors StoreUnavailable."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_locked(exc):
                raise _Locked from exc
            raise StoreUnavailable(f"sqlite store: {exc}") from exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        except sqlite3.Error as err:
            if exc_type is None:
                raise StoreUnavailable(f"sqlite store: {err}") from err


def _bench(path: str, n: int = 20000) -> None:
    store = SqliteStore(path)
    bucket = Bucket(key="bench", capacity=1e12, burst=0, window=0, ttl_s=60)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        store.take_sync([bucket], need=[1], take=[1])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"sqlite take (1 bucket): {wall / n * 1e6:.1f} us wall, {cpu / n * 1e6:.1f} us CPU per op")


if __name__ == "__main__":
    import sys

    _bench(sys.argv[1] if len(sys.argv) > 1 else "/tmp/llmgw-store-bench.db")
