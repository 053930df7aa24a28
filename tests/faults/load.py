"""A small bounded load for fault tests: a few client threads, every outcome counted.

Fault tests need to know what each request saw while something was killed, not
how fast it went: a closed loop of plain HTTP requests, each outcome recorded
as its status code, or the exception name when no response came.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcomes:
    counts: Counter[str] = field(default_factory=Counter)
    bad_bodies: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first few error bodies, for a failing assertion
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, bad_body: str | None = None) -> None:
        with self.lock:
            self.counts[outcome] += 1
            if bad_body is not None:
                self.bad_bodies.append(bad_body)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> int:
        return self.counts["200"]

    @property
    def failed(self) -> int:
        return self.total - self.ok


class Load:
    """`clients` threads POSTing `body` to `url` until stopped (or `seconds` pass)."""

    def __init__(
        self,
        *,
        url: str,
        body: dict[str, object],
        clients: int = 2,
        seconds: float = 30.0,
        check: Callable[[httpx.Response], bool] | None = None,
    ) -> None:
        self.url, self.body, self.seconds, self.check = url, body, seconds, check
        self.outcomes = Outcomes()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Outcomes:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self.outcomes

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = client.post(self.url, json=self.body)
                except httpx.HTTPError as exc:
                    self.outcomes.add(type(exc).__name__)
                    time.sleep(0.02)  # a refused connection returns at once: do not spin
                    continue
                bad = None
                if resp.status_code == 200 and self.check is not None and not self.check(resp):
                    bad = resp.text[:300]
                if resp.status_code != 200:
                    self.outcomes.add(f"{resp.status_code}", None)
                    with self.outcomes.lock:
                        if len(self.outcomes.errors) < 5:
                            self.outcomes.errors.append(resp.text[:200])
                    continue
                self.outcomes.add("200" if bad is None else "200-bad-body", bad)

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least `n` requests have finished (so a fault lands under load)."""
        deadline = time.monotonic() + timeout
        while self.outcomes.total < n and time.monotonic() < deadline:
            time.sleep(0.05)
