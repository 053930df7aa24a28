"""Provider credentials on the upstream request: which headers carry them, per auth kind.

Static keys (`kind: header`) come resolved from the config channel;
`passthrough` forwards the credential the client sent (agentgateway's
`auth.passthrough`), moved to where the provider expects it. Other
kinds live in their own modules, loaded on first use, each exposing
`auth_headers(provider, request) -> dict[str, str]`: `aws` (SigV4 over the
final body), `gcp` (OAuth access token), `azure` (Entra ID token). They must
not block the request path: tokens are cached and refreshed ahead of expiry.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from extproc.contract import ProviderConfig


@dataclass(frozen=True)
class SignedRequest:
    """What a signer may look at: the request exactly as it will leave Envoy."""

    method: str
    authority: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_token: str = field(default="", repr=False)  # the client's own credential (passthrough only)


# Where clients put their key, in the order a passthrough looks: a bearer token first.
_CLIENT_KEY_HEADERS = ("x-api-key", "api-key", "x-goog-api-key")


def client_token(headers: Mapping[str, str]) -> str:
    """The credential the client sent: the token of `Authorization: Bearer`, else a key header's value."""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else authorization
    for name in _CLIENT_KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value
    return ""


class CredentialError(Exception):
    """A credential could not be produced; the message names the credential, never a secret."""


log = logging.getLogger("llmgw.extproc.credentials")
HeaderMaker = Callable[[ProviderConfig, SignedRequest], dict[str, str]]
_MODULES = {"aws": "extproc.credentials.aws", "gcp": "extproc.credentials.gcp", "azure": "extproc.credentials.azure"}
_loaded: dict[str, HeaderMaker] = {}


def prefetch(providers: Iterable[ProviderConfig]) -> None:
    """Warm token credentials as soon as their config arrives, so that no request waits for a fetch.

    Modules with a `prefetch(provider)` start a background fetch and return at once.
    """
    for provider in providers:
        auth = provider.auth
        module_name = _MODULES.get(auth.kind) if auth is not None else None
        if module_name is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        warm = getattr(module, "prefetch", None)
        if warm is not None:
            try:
                warm(provider)
            except CredentialError as exc:
                log.warning("could not start fetching credentials for %s: %s", provider.id, exc)


def auth_headers(provider: ProviderConfig, request: SignedRequest) -> dict[str, str]:
    auth = provider.auth
    if auth is None:
        return {}
    if auth.kind == "header":
        return {auth.header: auth.header_value()}
    if auth.kind == "passthrough":
        # No client credential: nothing to forward (the provider answers its own 401).
        return {auth.header: f"{auth.prefix}{request.client_token}"} if request.client_token else {}
    maker = _loaded.get(auth.kind)
    if maker is None:
        module_name = _MODULES.get(auth.kind)
        if module_name is None:
            raise CredentialError(f"unknown credential kind {auth.kind!r} for provider {provider.id}")
        try:
            maker = importlib.import_module(module_name).auth_headers
        except ImportError as exc:
            raise CredentialError(f"{auth.kind} credentials are not available in this build") from exc
        _loaded[auth.kind] = maker
    return maker(provider, request)
