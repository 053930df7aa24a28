"""Access tokens cached per credential and refreshed ahead of expiry by one background thread.

Why: minting an OAuth access token (Entra ID, Google) is an HTTP round trip, and the
ext_proc attempt stage runs synchronously inside an asyncio loop that must not wait on
it. Each credential gets one `TokenSource`; its daemon thread fetches the first token,
then refreshes it ahead of expiry, so a warm request only reads the cached token.

Rules (the same for every credential kind that plugs a `fetch` in here):

- Only the source's own thread fetches, so concurrent first requests share one fetch
  and there is never more than one fetch in flight per credential.
- `start()` begins fetching without waiting (the extproc calls it when a config arrives).
- Only a request that comes before the first token (or finds the token expired without a
  recorded failure, e.g. after the process was suspended) waits, at most
  `first_fetch_timeout` seconds (less than Envoy's ext_proc message timeout, so the client gets
  our clear 502 naming the credential rather than Envoy's own timeout).
- A token is refreshed when a third of its lifetime (at least min(5 minutes, half the
  lifetime)) remains, or at the server's `refresh_at` hint if that is earlier.
- A failed refresh keeps serving the valid token until it expires, and retries with
  exponential backoff (never later than half the remaining validity).
- With a failure recorded and no valid token, requests fail at once with the failure's
  reason (they never queue behind a retry that may be slow); the thread keeps retrying.
- A source nobody asked for during `idle_timeout` stops its thread; the next request
  restarts it.

Failure reasons are produced by the caller's `describe` (which must scrub secrets) and
raised as `CredentialError("<name> failed: <reason>")`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from extproc import metrics
from extproc.credentials import CredentialError

log = logging.getLogger("llmgw.extproc.credentials")

FIRST_FETCH_TIMEOUT = 4.0  # seconds a first request may wait; below Envoy's ext_proc message_timeout (5 s)
REFRESH_MARGIN = 300.0  # refresh at least this long before expiry (at most half the lifetime)
VALIDITY_SKEW = 10.0  # a token this close to expiry (at most a tenth of its lifetime) is not handed out
MIN_DELAY = 0.5  # shortest sleep between two fetches
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
IDLE_TIMEOUT = 3600.0  # stop refreshing a credential unused for this long
MAX_REASON = 500


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # wall-clock seconds since the epoch
    refresh_at: float | None = None  # the server's suggested refresh time, if any


def default_describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class TokenSource:
    """One credential's cached access token and the thread that keeps it fresh."""

    def __init__(
        self,
        *,
        name: str,
        fetch: Callable[[], AccessToken],
        describe: Callable[[BaseException], str] = default_describe,
        first_fetch_timeout: float = FIRST_FETCH_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._describe = describe
        self.first_fetch_timeout = first_fetch_timeout
        self.idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: AccessToken | None = None
        self._skew = 0.0
        self._error: str | None = None
        self._attempts = 0  # finished fetch attempts, successful or not
        self._failing = False  # the thread's last attempt failed (for logging transitions)
        self._fetching = False  # the thread is fetching right now
        self._last_used = time.monotonic()
        # Observability for tests and logs.
        self.fetches = 0
        self.failures = 0

    # -- request path ---------------------------------------------------------------

    def token(self, *, timeout: float | None = None) -> str:
        """The current token; waits (bounded) only when none was ever fetched or it expired cleanly."""
        wait = self.first_fetch_timeout if timeout is None else timeout
        with self._cond:
            self._last_used = time.monotonic()
            if self._thread is None and not self._stopped.is_set():
                self._start()
            value = self._valid_value()
            if value is not None:
                return value
            if self._stopped.is_set():
                raise CredentialError(f"{self.name} failed: the credential was replaced; retry")
            if self._error is not None:
                raise CredentialError(f"{self.name} failed: {self._error}")
            if not self._fetching:
                self._wake.set()  # expired without a failure (e.g. the process was suspended): refresh now
            seen = self._attempts
            self._cond.wait_for(lambda: self._valid_value() is not None or self._attempts > seen, wait)
            value = self._valid_value()
            if value is not None:
                return value
            if self._error is not None:
                raise CredentialError(f"{self.name} failed: {self._error}")
            # Later requests fail at once until the slow fetch finishes.
            self._error = f"no token within {wait:g}s (still trying)"
            raise CredentialError(f"{self.name} failed: {self._error}")

    def start(self) -> None:
        """Begin fetching in the background without waiting (warm-up when the config arrives)."""
        with self._cond:
            if self._thread is None and not self._stopped.is_set():
                self._start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None

    def _valid_value(self) -> str | None:
        token = self._token
        if token is not None and token.expires_at - time.time() > self._skew:
            return token.value
        return None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"token {self.name}", daemon=True)
        self._thread.start()

    # -- background thread ------------------------------------------------------------

    def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stopped.is_set():
            with self._cond:
                self._wake.clear()
                self._fetching = True
            started = time.time()
            try:
                token = self._fetch()
                if not isinstance(token.value, str) or not token.value:
                    raise ValueError("the token endpoint returned no access token")
                if token.expires_at <= started:
                    raise ValueError("the token endpoint returned an expired access token")
            except Exception as exc:  # every failure is reported to requests, then retried
                reason = self._describe(exc)
                with self._cond:
                    self._fetching = False
                    first_failure = not self._failing
                    self._failing = True
                    self._error = reason
                    self._attempts += 1
                    self.failures += 1
                    metrics.CREDENTIAL_REFRESH_FAILURES.inc()
                    remaining = (self._token.expires_at - time.time()) if self._token else 0.0
                    self._cond.notify_all()
                level = logging.WARNING if first_failure else logging.DEBUG
                log.log(level, "%s failed: %s", self.name, reason)
                delay = backoff
                if remaining > 0:
                    delay = min(delay, max(MIN_DELAY, remaining / 2))
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                with self._cond:
                    self._fetching = False
                    if self._failing:
                        log.info("%s recovered", self.name)
                    self._failing = False
                    self._token = token
                    lifetime = max(0.0, token.expires_at - started)
                    self._skew = min(VALIDITY_SKEW, lifetime / 10)
                    self._error = None
                    self._attempts += 1
                    self.fetches += 1
                    self._cond.notify_all()
                backoff = MIN_BACKOFF
                delay = refresh_delay(token, fetched_at=started, now=time.time())
            self._wake.wait(delay)
            with self._cond:
                if time.monotonic() - self._last_used > self.idle_timeout or self._stopped.is_set():
                    self._thread = None
                    return
        with self._cond:
            self._thread = None


def refresh_delay(token: AccessToken, *, fetched_at: float, now: float) -> float:
    """Seconds from `now` until `token` should be replaced."""
    lifetime = max(0.0, token.expires_at - fetched_at)
    margin = max(lifetime / 3, min(REFRESH_MARGIN, lifetime / 2))
    at = token.expires_at - margin
    if token.refresh_at is not None and fetched_at < token.refresh_at < at:
        at = token.refresh_at
    return max(MIN_DELAY, at - now)


class TokenSources:
    """Sources keyed by credential identity (a hash, never a secret), least recently used evicted."""

    def __init__(self, *, limit: int = 64) -> None:
        self.limit = limit
        self._sources: OrderedDict[str, TokenSource] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, factory: Callable[[], TokenSource]) -> TokenSource:
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                source = self._sources[key] = factory()
                while len(self._sources) > self.limit:
                    _, old = self._sources.popitem(last=False)
                    old.stop()
            self._sources.move_to_end(key)
            return source

    def __len__(self) -> int:
        with self._lock:
            return len(self._sources)

    def values(self) -> list[TokenSource]:
        with self._lock:
            return list(self._sources.values())

    def clear(self) -> None:
        with self._lock:
            sources = list(self._sources.values())
            self._sources.clear()
        for source in sources:
            source.stop()
