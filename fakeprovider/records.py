"""What the fake provider received, kept so tests can assert on the upstream request.

The gateway's job is to rewrite requests (paths, credentials, bodies); the only
honest way to test that is to look at what actually reached the provider. The
store is bounded (oldest dropped first) so a long benchmark run does not grow
without limit, and locked because `FakeProviderThread` reads it from the test
thread while the server thread appends.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

# Requests kept for /_fake/requests unless told otherwise (`--record-limit`).
DEFAULT_RECORD_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as received. Also indexable (`rec["path"]`) like the admin JSON."""

    method: str
    path: str
    """Raw path including the query string, e.g. `/v1/chat/completions?api-version=x`."""
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with `, `."""
    body: str
    """Raw body decoded as UTF-8 (invalid bytes replaced)."""
    json: Any
    """Parsed JSON body, or None when empty or not JSON."""
    time: float
    """Arrival time, `time.time()`."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe bounded list of `RecordedRequest`; limit 0 disables recording."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._items: deque[RecordedRequest] = deque(maxlen=limit or None)
        self._lock = threading.Lock()

    def append(self, record: RecordedRequest) -> None:
        with self._lock:
            self._items.append(record)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def to_json(self) -> bytes:
        return orjson.dumps(self.snapshot())
