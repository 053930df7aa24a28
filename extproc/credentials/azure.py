"""Auth kind `azure`: Microsoft Entra ID access tokens for Azure OpenAI and AI Foundry, via `azure-identity`.

`AuthConfig.params["mode"]` picks the credential (the control plane fills it from
`policies.auth.azure`; no mode means the default chain):

- `client_secret`: `ClientSecretCredential` from the Secret's `clientID`, `tenantID`, `clientSecret`.
- `managed_identity`: `ManagedIdentityCredential`, system-assigned, or user-assigned by exactly
  one of `client_id`, `object_id`, `resource_id` (IMDS, App Service `IDENTITY_ENDPOINT`, ...).
- `workload_identity`: `WorkloadIdentityCredential` from the pod's `AZURE_CLIENT_ID`,
  `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` (and `AZURE_AUTHORITY_HOST`).
- `default`: `DefaultAzureCredential` limited to environment, workload identity and managed
  identity (no developer tools). Its IMDS probe gives up after one short attempt off Azure.

The scope is `https://ai.azure.com/.default` for `*.services.ai.azure.com` (AI Foundry) and
`https://cognitiveservices.azure.com/.default` otherwise; the token goes upstream as
`Authorization: Bearer`.

Tokens are cached per (credential, scope) in `extproc.credentials.token_cache`: one background thread per
credential fetches as soon as the config arrives (`prefetch`) and refreshes ahead of expiry,
so requests do not wait. Every fetch builds a fresh
azure-identity credential and closes it: the library's own cache would otherwise hand back
the old token until five minutes before expiry (and throttles refreshes to one per 30 s),
which defeats refreshing early. The price is one OIDC discovery request per refresh.
Entra credentials run with instance discovery disabled, so a private authority
(`AZURE_AUTHORITY_HOST`) works; the well-known public and sovereign hosts skip it anyway.

Errors name the credential (mode, Secret, abbreviated tenant/client IDs) and Entra's reason;
secret values, the App Service identity header and anything shaped like a JWT are scrubbed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.identity import (
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from extproc.contract import ProviderConfig
from extproc.credentials import CredentialError, SignedRequest
from extproc.credentials.token_cache import AccessToken, TokenSource, TokenSources

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
AI_FOUNDRY_SCOPE = "https://ai.azure.com/.default"
FOUNDRY_HOST_SUFFIX = ".services.ai.azure.com"
WORKLOAD_ENV = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
_SECRET_ENV = ("AZURE_CLIENT_SECRET", "IDENTITY_HEADER", "MSI_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD")
# Explicit Entra credentials: private authorities allowed, bounded HTTP waits.
_ENTRA_OPTIONS: dict[str, Any] = {"disable_instance_discovery": True, "connection_timeout": 10, "read_timeout": 30}
# The default chain: only the production sources (no CLI, PowerShell, VS Code, browser, broker).
_DEFAULT_CHAIN_OPTIONS: dict[str, Any] = {
    "disable_instance_discovery": True,
    "exclude_cli_credential": True,
    "exclude_developer_cli_credential": True,
    "exclude_powershell_credential": True,
    "exclude_visual_studio_code_credential": True,
    "exclude_shared_token_cache_credential": True,
    "exclude_interactive_browser_credential": True,
    "exclude_broker_credential": True,
}
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_TROUBLESHOOTING = re.compile(
    r"\s*(See the troubleshooting guide for more information: |Visit |To mitigate this issue, please refer to the "
    r"troubleshooting guidelines here at )?https://aka\.ms/\S+( to troubleshoot this issue\.?)?"
)
MAX_REASON = 600

# Quiet azure-identity's own per-attempt warnings: this module logs one line per failure.
logging.getLogger("azure.identity").setLevel(logging.ERROR)
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

_sources = TokenSources(limit=64)


def scope_for(provider: ProviderConfig) -> str:
    """The Entra scope of the provider's Azure resource (Foundry hosts get the AI Foundry scope)."""
    for host in _azure_hosts(provider):
        if host == FOUNDRY_HOST_SUFFIX[1:] or host.endswith(FOUNDRY_HOST_SUFFIX):
            return AI_FOUNDRY_SCOPE
    return COGNITIVE_SERVICES_SCOPE


def _azure_hosts(provider: ProviderConfig) -> list[str]:
    """The upstream host and the Azure host the manifest names (they differ when `host` overrides it)."""
    settings = provider.settings
    hosts = [provider.host]
    endpoint = settings.get("endpoint", "")
    if endpoint:
        hosts.append(endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0])
    if settings.get("resourceName"):
        suffix = "services.ai.azure.com" if settings.get("resourceType") == "Foundry" else "openai.azure.com"
        hosts.append(f"{settings['resourceName']}.{suffix}")
    return [h.lower().rstrip(".") for h in hosts if h]


@dataclass(frozen=True)
class CredentialSpec:
    """How to build one credential: cache key (no secret in it), human name, factory, values to scrub."""

    key: str
    name: str
    make: Callable[[], Any]
    secrets: tuple[str, ...] = ()


def _short(value: str) -> str:
    return value if len(value) <= 8 else value[:8] + "…"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def credential_spec(provider: ProviderConfig) -> CredentialSpec:
    auth = provider.auth
    params: Mapping[str, str] = auth.params if auth is not None else {}
    mode = params.get("mode") or "default"
    if mode == "client_secret":
        return _client_secret(params, (auth.source if auth is not None else "") or "client secret")
    if mode == "workload_identity":
        return _workload_identity()
    if mode == "managed_identity":
        return _managed_identity(params)
    if mode == "default":
        return _default_chain()
    raise CredentialError(f"unknown Azure credential mode {mode!r} for provider {provider.id}")


def _client_secret(params: Mapping[str, str], source: str) -> CredentialSpec:
    tenant, client, secret = params.get("tenant_id", ""), params.get("client_id", ""), params.get("client_secret", "")
    name = f"Azure client secret ({source}, tenant {_short(tenant)}, client {_short(client)})"
    missing = [k for k, v in (("tenantID", tenant), ("clientID", client), ("clientSecret", secret)) if not v]
    if missing:
        raise CredentialError(f"{name} is incomplete: no {', '.join(missing)}")

    def make() -> Any:
        return ClientSecretCredential(tenant, client, secret, **_ENTRA_OPTIONS)

    return CredentialSpec(key=_digest("client_secret", tenant, client, secret), name=name, make=make, secrets=(secret,))


def _workload_identity() -> CredentialSpec:
    env = {k: os.environ.get(k, "") for k in WORKLOAD_ENV}
    client, tenant = env["AZURE_CLIENT_ID"], env["AZURE_TENANT_ID"]
    name = "Azure workload identity"
    if client or tenant:
        name += f" (tenant {_short(tenant)}, client {_short(client)})"

    def make() -> Any:
        missing = [k for k in WORKLOAD_ENV if not os.environ.get(k)]
        if missing:
            raise CredentialError(f"not configured: the gateway's environment has no {', '.join(missing)}")
        return WorkloadIdentityCredential(**_ENTRA_OPTIONS)

    return CredentialSpec(key=_digest("workload_identity", *env.values()), name=name, make=make)


def _managed_identity(params: Mapping[str, str]) -> CredentialSpec:
    given = [(k, params[k]) for k in ("client_id", "object_id", "resource_id") if params.get(k)]
    if len(given) > 1:
        raise CredentialError(
            f"Azure managed identity: set at most one of clientId, objectId, resourceId (got {[k for k, _ in given]})"
        )
    if not given:
        name = "Azure system-assigned managed identity"
        kwargs: dict[str, Any] = {}
    else:
        id_kind, value = given[0]
        name = f"Azure user-assigned managed identity ({id_kind} {_short(value)})"
        kwargs = {"client_id": value} if id_kind == "client_id" else {"identity_config": {id_kind: value}}

    def make() -> Any:
        return ManagedIdentityCredential(**kwargs)

    return CredentialSpec(key=_digest("managed_identity", *(f"{k}={v}" for k, v in given)), name=name, make=make)


def _default_chain() -> CredentialSpec:
    def make() -> Any:
        return DefaultAzureCredential(**_DEFAULT_CHAIN_OPTIONS)

    name = "Azure default credential chain (environment, workload identity, managed identity)"
    return CredentialSpec(key=_digest("default"), name=name, make=make)


def describe(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """A one-line reason for a failure, without troubleshooting links or any secret."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = _TROUBLESHOOTING.sub("", str(text))
    text = " ".join(text.split())
    for value in (*secrets, *(os.environ.get(k, "") for k in _SECRET_ENV)):
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _JWT.sub("***", text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _fetcher(spec: CredentialSpec, scope: str) -> Callable[[], AccessToken]:
    def fetch() -> AccessToken:
        credential = spec.make()
        try:
            info = credential.get_token_info(scope)
        finally:
            credential.close()
        refresh_on = getattr(info, "refresh_on", None)
        return AccessToken(
            value=info.token, expires_at=float(info.expires_on), refresh_at=float(refresh_on) if refresh_on else None
        )

    return fetch


_by_provider: dict[int, tuple[ProviderConfig, TokenSource]] = {}  # id(provider) -> source: the warm path
_BY_PROVIDER_LIMIT = 1024


def source_for(provider: ProviderConfig) -> TokenSource:
    hit = _by_provider.get(id(provider))
    if hit is not None and hit[0] is provider and not hit[1].stopped:
        return hit[1]
    source = _source_for(provider)
    if len(_by_provider) >= _BY_PROVIDER_LIMIT:
        _by_provider.clear()
    _by_provider[id(provider)] = (provider, source)
    return source


def _source_for(provider: ProviderConfig) -> TokenSource:
    spec = credential_spec(provider)
    scope = scope_for(provider)

    def factory() -> TokenSource:
        return TokenSource(
            name=spec.name,
            fetch=_fetcher(spec, scope),
            describe=lambda exc: describe(exc, spec.secrets),
        )

    return _sources.get(f"{spec.key}:{scope}", factory)


def prefetch(provider: ProviderConfig) -> None:
    """Start fetching the provider's token in the background (called when its config arrives)."""
    source_for(provider).start()


def reset() -> None:
    """Forget every credential and stop its refresh thread (tests; a process that changes identity)."""
    _by_provider.clear()
    _sources.clear()


def auth_headers(provider: ProviderConfig, request: SignedRequest) -> dict[str, str]:
    try:
        token = source_for(provider).token()
    except CredentialError as exc:
        raise CredentialError(f"{exc} (provider {provider.id})") from None
    return {"authorization": f"Bearer {token}"}
