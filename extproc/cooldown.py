"""Providers that asked for a pause (`Retry-After`): kept out of load balancing until then.

Envoy's outlier detection ejects a host for a fixed `base_ejection_time`
(times the number of ejections); nothing in Envoy 1.40 takes the duration
from a response, and `rate_limited_retry_back_off` only delays the retry of
the same request, the opposite of failing over now. An attempt-stage reply
cannot "skip" a provider either: a local reply from an upstream filter goes
straight to the client, without the router's retry.

So the pause is split between the two sides that can each do half of it:

- start: on failover clusters the attempt stage sees every attempt's response
  headers. A 429/503/529 with `Retry-After` (or `retry-after-ms`) is noted on
  this board ("provider P until T") and the attempt stage adds
  `x-envoy-immediate-health-check-fail` to it: Envoy's router then marks that
  host failed at once (EXCLUDED_VIA_IMMEDIATE_HC_FAIL), in every Envoy worker,
  and retries the request on the next provider.
- end: those clusters have an active HTTP health check whose target is not
  the provider but the gateway's own pause oracle (`GET /llmgw/pause`, the
  endpoint's `Host` naming the provider by `pause_key`), served by the
  supervisor from this board: 503 while P is paused, 200 after. Envoy checks
  every second, so P returns within about a second of T.

The board is shared by the worker processes (either stage of a request may
run in any of them) and read by the oracle, through a directory
(`LLMGW_STATE_DIR`): one small file per paused provider, replaced
atomically, named by `pause_key`. That naming and the file format are part of
the contract between extproc and the control plane.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger("llmgw.extproc.cooldown")

STATE_DIR_ENV = "LLMGW_STATE_DIR"
# Envoy's own cap on an ejection (outlier detection max_ejection_time default): a bogus or
# day-long Retry-After must not starve a provider for longer than that.
MAX_PAUSE_S = 300.0
PAUSE_STATUSES = frozenset((429, 503, 529))
ORACLE_PATH = "/llmgw/pause"
# Endpoint metadata (llmgw namespace) of hosts whose cluster checks them against the pause oracle.
PAUSABLE_KEY = "pausable"


def pause_key(provider_id: str) -> str:
    """A provider's name on the board and in its health check's Host header (a valid hostname)."""
    return "p-" + hashlib.sha256(provider_id.encode()).hexdigest()[:32]


def retry_after_seconds(headers: dict[str, str], *, now: float | None = None) -> float | None:
    """The pause a response asks for, in seconds (capped), or None when it names none.

    `retry-after-ms` (OpenAI, Azure OpenAI) wins over `retry-after`, which is
    delta-seconds or an HTTP-date (RFC 9110 10.2.3). Zero or a past date: None.
    """
    seconds: float | None = None
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            seconds = float(ms) / 1000
    value = headers.get("retry-after", "").strip()
    if seconds is None and value:
        try:
            seconds = float(value)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                when = email.utils.parsedate_to_datetime(value)
                seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, MAX_PAUSE_S)


class CooldownBoard:
    """pause key -> wall-clock time until which that provider is left alone."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._local: dict[str, float] = {}
        self._dir = Path(directory) if directory else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> CooldownBoard:
        return cls(os.environ.get(STATE_DIR_ENV) or None)

    @property
    def shared(self) -> bool:
        return self._dir is not None

    def note(self, provider_id: str, seconds: float, *, now: float | None = None) -> bool:
        """Pause `provider_id` for `seconds` from now (never shortens a pause); True if a new pause starts."""
        now = time.time() if now is None else now
        key = pause_key(provider_id)
        until = now + seconds
        current = self._until(key)
        if until <= current:
            return False
        self._local[key] = until
        if self._dir is not None:
            self._write(key, until, provider_id)
        return current <= now

    def remaining(self, provider_id: str, *, now: float | None = None) -> float:
        """Seconds `provider_id` still asked to be left alone; 0 when it may be used."""
        return self.remaining_for_key(pause_key(provider_id), now=now)

    def remaining_for_key(self, key: str, *, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return max(0.0, self._until(key) - now)

    def _until(self, key: str) -> float:
        until = self._local.get(key, 0.0)
        if self._dir is not None:
            until = max(until, self._read(key))
        return until

    def _read(self, key: str) -> float:
        assert self._dir is not None
        if not key.startswith("p-") or not key[2:].isalnum():
            return 0.0  # not a name this board writes (the oracle passes what Envoy sent)
        try:
            with open(self._dir / key, "rb") as f:
                return float(f.read(64).split(b"\n", 1)[0])
        except (OSError, ValueError):
            return 0.0

    def _write(self, key: str, until: float, provider_id: str) -> None:
        assert self._dir is not None
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(f"{until:.3f}\n{provider_id}\n".encode())
            os.replace(tmp, self._dir / key)
        except OSError as exc:  # Envoy still excludes the host; only its return may come early
            log.warning("cannot record the pause of provider %s: %s", provider_id, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
