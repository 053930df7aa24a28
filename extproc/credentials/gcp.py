"""Auth kind `gcp`: Google OAuth access tokens (Vertex AI) via `google-auth`, never blocking when warm.

The credential is either the JSON in `AuthConfig.params["credentials_json"]` (a service
account key or an authorized-user JSON; `external_account` configurations are refused
there, since they can run commands or fetch URLs named in the Secret) or, when absent,
the ambient ADC (`google.auth.default()`: GOOGLE_APPLICATION_CREDENTIALS, gcloud, workload
identity, the GCE/GKE metadata server). Scope `https://www.googleapis.com/auth/cloud-platform`.

Why a thread per credential: minting a token is an HTTP round trip to the token endpoint,
and the ext_proc request path is an asyncio loop that must not wait on it. Each credential
gets one `TokenSource` whose daemon thread fetches the first token, then refreshes it
ahead of expiry (5 minutes, or half the lifetime for short-lived tokens), so a warm
request only reads the cached token. Only the very first request of a credential waits,
at most `FIRST_FETCH_TIMEOUT` seconds. Sources are keyed by a hash of the credential, so a
rotated Secret is a new source and the old one is stopped when evicted.

Errors raise `CredentialError` naming the credential (its source, the service account
e-mail) and Google's reason, never key material.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport
import google.oauth2.credentials
import google.oauth2.service_account

from extproc.contract import ProviderConfig
from extproc.credentials import CredentialError, SignedRequest

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
FIRST_FETCH_TIMEOUT = 4.0  # seconds the first request may wait: under Envoy's 5 s ext_proc message timeout
HTTP_TIMEOUT = 10.0
REFRESH_MARGIN = 300.0  # refresh this long before expiry (at most half the token's lifetime)
MIN_SLEEP = 1.0
MAX_BACKOFF = 60.0
VALIDITY_SKEW = 10.0  # a token this close to expiry is not handed out
MAX_SOURCES = 32


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, dict(headers), data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class UrllibRequest(google.auth.transport.Request):
    """google-auth's HTTP transport over the standard library (no `requests` dependency)."""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout or HTTP_TIMEOUT) as resp:
                return _Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as exc:  # 4xx/5xx: google-auth reads the error body itself
            return _Response(exc.code, dict(exc.headers.items()) if exc.headers else {}, exc.read())
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise google.auth.exceptions.TransportError(f"{url}: {getattr(exc, 'reason', exc)}") from exc


def _reason(exc: BaseException) -> str:
    """Google's reason for a failure, short; google-auth puts the message first in `args`."""
    first = exc.args[0] if exc.args else exc
    text = str(first).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class TokenSource:
    """One credential's cached access token and the thread that keeps it fresh."""

    def __init__(self, *, name: str, make_credentials: Callable[[], Any], request: Any = None) -> None:
        self.name = name
        self._make = make_credentials
        self._request = request or UrllibRequest()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: str | None = None
        self._expiry = 0.0  # wall-clock seconds
        self._error: str | None = None
        self._attempts = 0
        self.fetches = 0  # successful fetches (tests)

    def start(self) -> None:
        """Begin fetching in the background (idempotent); `token()` calls it too."""
        with self._cond:
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"gcp-token {self.name}", daemon=True)
            self._thread.start()

    def token(self, *, timeout: float = FIRST_FETCH_TIMEOUT) -> str:
        with self._cond:
            if self._valid():
                return self._token  # type: ignore[return-value]
            if self._thread is None:
                self._start()
            elif self._error is not None:  # failing: the thread retries on its own backoff
                raise CredentialError(f"{self.name}: {self._error}")
            else:
                self._wake.set()  # expired (e.g. the process was suspended): refresh now
            seen = self._attempts
            self._cond.wait_for(lambda: self._valid() or self._attempts > seen, timeout)
            if self._valid():
                return self._token  # type: ignore[return-value]
            if self._error is not None:
                raise CredentialError(f"{self.name}: {self._error}")
            raise CredentialError(f"{self.name}: no access token within {timeout:g}s")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _valid(self) -> bool:
        return self._token is not None and self._expiry - time.time() > VALIDITY_SKEW

    def _run(self) -> None:
        credentials: Any = None
        backoff = MIN_SLEEP
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if credentials is None:
                    credentials = self._make()
                credentials.refresh(self._request)
                token = credentials.token
                if not isinstance(token, str) or not token:
                    raise google.auth.exceptions.RefreshError("the token endpoint returned no access token")
                expiry = credentials.expiry
                expires = expiry.replace(tzinfo=UTC).timestamp() if expiry else time.time() + 3600
            except Exception as exc:  # any failure is reported to waiting requests, then retried
                with self._cond:
                    self._error = _reason(exc)
                    self._attempts += 1
                    self._cond.notify_all()
                sleep, backoff = backoff, min(backoff * 2, MAX_BACKOFF)
            else:
                now = time.time()
                with self._cond:
                    self._token, self._expiry, self._error = token, expires, None
                    self._attempts += 1
                    self.fetches += 1
                    self._cond.notify_all()
                backoff = MIN_SLEEP
                lifetime = max(0.0, expires - now)
                sleep = max(MIN_SLEEP, lifetime - min(REFRESH_MARGIN, lifetime / 2))
            self._wake.wait(sleep)


# Only credential types that cannot run commands or fetch arbitrary URLs are loaded from a Secret
# (external_account configurations can; ambient ADC may use them, being the operator's own setup).
_LOADERS: dict[str, Callable[..., Any]] = {
    "service_account": google.oauth2.service_account.Credentials.from_service_account_info,
    "authorized_user": google.oauth2.credentials.Credentials.from_authorized_user_info,
}


def _service_account_name(info: dict[str, Any]) -> str:
    email = info.get("client_email")
    return f" ({email})" if isinstance(email, str) else ""


def _source_for(provider: ProviderConfig) -> tuple[str, str, Callable[[], Any]]:
    """(cache key, human name, credentials factory) of a provider's gcp auth."""
    auth = provider.auth
    raw = auth.params.get("credentials_json", "") if auth is not None else ""
    origin = (auth.source if auth is not None and auth.source else "") or "gcp credential"
    if not raw:
        name = "ambient Google credentials (ADC)"

        def ambient() -> Any:
            credentials, _ = google.auth.default(scopes=list(SCOPES))
            return credentials

        return "ambient", name, ambient
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise CredentialError(f"{origin}: credentials.json is not valid JSON") from exc
    if not isinstance(info, dict):
        raise CredentialError(f"{origin}: credentials.json must be a JSON object")
    kind = info.get("type")
    if kind not in _LOADERS:
        raise CredentialError(
            f"{origin}: credential type {kind!r} is not supported in a Secret "
            "(use a service_account key or authorized_user JSON, or ambient credentials)"
        )
    name = f"{origin}{_service_account_name(info)}"

    def from_json() -> Any:
        return _LOADERS[kind](info, scopes=list(SCOPES))

    return hashlib.sha256(raw.encode()).hexdigest(), name, from_json


_sources: OrderedDict[str, TokenSource] = OrderedDict()
_lock = threading.Lock()


def source_for(provider: ProviderConfig) -> TokenSource:
    key, name, factory = _source_for(provider)
    with _lock:
        source = _sources.get(key)
        if source is None:
            source = _sources[key] = TokenSource(name=name, make_credentials=factory)
            while len(_sources) > MAX_SOURCES:
                _, old = _sources.popitem(last=False)
                old.stop()
        _sources.move_to_end(key)
        return source


def prefetch(provider: ProviderConfig) -> None:
    """Start fetching a provider's token now (e.g. when its config arrives), so no request waits for it."""
    source_for(provider).start()


def auth_headers(provider: ProviderConfig, request: SignedRequest) -> dict[str, str]:
    try:
        token = source_for(provider).token()
    except CredentialError as exc:
        raise CredentialError(f"{exc} (provider {provider.id})") from None
    return {"authorization": f"Bearer {token}"}
