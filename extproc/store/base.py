"""The one store interface every limit and budget goes through (DESIGN "Shared state").

A limit is a bucket that fills by `capacity` at the start of every window
(a second, minute, hour, day or calendar month) up to `capacity + burst`, as
agentgateway's local rate limit does (`maxTokens = requests + burst`,
`tokensPerFill = requests`, one fill per unit), except that windows are
aligned to the clock, so every worker and replica agrees on them, and they
survive a restart. Two operations, both atomic over all buckets of a request:

- `take`: refill, then if every bucket holds at least its `need`, subtract
  its `take` from each (a request limit takes 1; token and USD buckets need
  something left and take nothing yet). Nothing is taken when one refuses.
- `charge`: refill, then subtract what the response really used (may go
  below zero: the next requests wait for enough windows to pay it back; a
  negative amount gives a reservation back, up to the ceiling).

Backends: `sqlite` (exact across the workers of one gateway, no server) and
`redis` (exact across replicas). No policy module talks to either directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store could not answer in time (Redis down or slow): the caller applies its failure mode."""


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str  # the limit's identity: rule and descriptor values (no secret, see policies.limits)
    capacity: float  # added at every window start
    burst: float  # held above capacity at most
    window: int  # index of the current window (same unit for every call with this key)
    ttl_s: int  # how long an untouched bucket is kept (a few windows)

    @property
    def ceiling(self) -> float:
        return self.capacity + self.burst


@dataclass(frozen=True, slots=True)
class Taken:
    allowed: bool
    levels: tuple[float, ...]  # each bucket's level after the operation (before it, when refused)


class Store(Protocol):
    name: str

    async def take(self, buckets: Sequence[Bucket], *, need: Sequence[float], take: Sequence[float]) -> Taken: ...

    async def charge(self, buckets: Sequence[Bucket], *, amounts: Sequence[float]) -> tuple[float, ...]: ...

    async def close(self) -> None: ...


def refill(level: float | None, last: int | None, bucket: Bucket) -> float:
    """A bucket's level in window `bucket.window` given what was stored (None: never used: full)."""
    if level is None or last is None:
        return bucket.ceiling
    if bucket.window > last:
        return min(bucket.ceiling, level + (bucket.window - last) * bucket.capacity)
    return level  # same window, or a replica whose clock is behind: no refill
