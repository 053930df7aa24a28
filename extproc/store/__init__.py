"""Shared state for limits and budgets: `open_store` picks the backend from the environment.

`LLMGW_STORE`: `sqlite:PATH` (the default the supervisor sets: one file in
the run directory, shared by its workers) or `redis://HOST:PORT/DB`
(`rediss://` for TLS; several replicas share one Redis). Unset (e.g.
`llmgw extproc` alone): a SQLite file in `LLMGW_STATE_DIR`, else in memory
for this process only.
"""

from __future__ import annotations

import os

from extproc.store.base import Bucket, Store, StoreUnavailable, Taken

STORE_ENV = "LLMGW_STORE"
FAILURE_MODE_ENV = "LLMGW_STORE_FAILURE_MODE"  # FailOpen | FailClosed (default)
FAIL_OPEN = "FailOpen"
FAIL_CLOSED = "FailClosed"

__all__ = ["Bucket", "Store", "StoreUnavailable", "Taken", "describe", "failure_mode", "open_store"]


def open_store(url: str | None = None) -> Store:
    url = url if url is not None else os.environ.get(STORE_ENV, "")
    if url.startswith(("redis://", "rediss://", "unix://")):
        from extproc.store.redis import RedisStore

        return RedisStore(url)
    from extproc.store.sqlite import SqliteStore

    if url.startswith("sqlite:"):
        return SqliteStore(url.removeprefix("sqlite:"))
    if url:
        raise ValueError(f"{STORE_ENV} must be sqlite:PATH or redis://HOST:PORT/DB, not {describe(url)!r}")
    state = os.environ.get("LLMGW_STATE_DIR")
    return SqliteStore(os.path.join(state, "limits.db") if state else ":memory:")


def failure_mode(value: str | None = None) -> str:
    value = value if value is not None else os.environ.get(FAILURE_MODE_ENV, FAIL_CLOSED)
    if value not in (FAIL_OPEN, FAIL_CLOSED):
        raise ValueError(f"{FAILURE_MODE_ENV} must be {FAIL_OPEN} or {FAIL_CLOSED}, not {value!r}")
    return value


def describe(url: str) -> str:
    """The store URL for a log line: scheme, host and path, never a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
