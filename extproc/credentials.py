"""Provider credentials on the upstream request: which headers carry them, per auth kind.

Static keys come resolved from the config channel. Signing and token kinds
(AWS SigV4, GCP, Entra ID) plug in here by `AuthConfig.kind`; they must not
block the request path (tokens are cached and refreshed ahead of expiry).
"""

from __future__ import annotations

from dataclasses import dataclass

from extproc.contract import ProviderConfig


@dataclass(frozen=True)
class SignedRequest:
    """What a signer may look at: the request exactly as it will leave Envoy."""

    method: str
    authority: str
    path: str
    headers: dict[str, str]
    body: bytes


def auth_headers(provider: ProviderConfig, request: SignedRequest) -> dict[str, str]:
    auth = provider.auth
    if auth is None:
        return {}
    return {auth.header: auth.header_value()}
