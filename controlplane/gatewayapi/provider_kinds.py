"""What each `AIBackend` provider kind defaults to, and which of its fields it keeps.

The upstream host, port and TLS a kind implies when the manifest does not
say, the header its API key goes in, the credential kind it uses when no
`policies.auth` is given (cloud providers default to their ambient chain),
and the provider-block fields passed to the extproc as `settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProviderKind:
    host: Callable[[Mapping[str, str]], str | None]  # default host from settings; None: `host` required
    port: int = 443
    tls: bool = True
    path_prefix: str = "/v1"
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    ambient_auth: str | None = None  # credential kind used when no policies.auth is given
    fields: tuple[str, ...] = ()  # provider-block fields kept as settings (besides model)
    required: tuple[str, ...] = ()
    defaults: Mapping[str, str] = field(default_factory=dict)
    # OpenAI-compatible wire format: a route to one such provider can have its provider work
    # done on the request headers, saving the attempt stage (gatewayapi/direct.py).
    direct: bool = False


def _fixed(host: str | None) -> Callable[[Mapping[str, str]], str | None]:
    return lambda _settings: host


def _vertex_host(s: Mapping[str, str]) -> str:
    region = s.get("region", "global")
    return "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"


def _endpoint_host(s: Mapping[str, str]) -> str | None:
    endpoint = s.get("endpoint", "")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    return host or None


def _azure_host(s: Mapping[str, str]) -> str | None:
    name = s.get("resourceName")
    if not name:
        return None
    suffix = "services.ai.azure.com" if s.get("resourceType") == "Foundry" else "openai.azure.com"
    return f"{name}.{suffix}"


# The provider kinds llmgw knows. extproc.providers.PROVIDERS (the extproc's module per kind)
# and crds/generate.py's provider_kinds() (the CRD schema) must name the same kinds:
# tests/test_provider_registry.py fails when they disagree.
KINDS: dict[str, ProviderKind] = {
    "openai": ProviderKind(host=_fixed("api.openai.com"), direct=True),
    "custom": ProviderKind(host=_fixed(None), port=80, tls=False, direct=True),
    "anthropic": ProviderKind(
        host=_fixed("api.anthropic.com"),
        path_prefix="",
        auth_header="x-api-key",
        auth_prefix="",
        fields=("apiVersion",),
    ),
    "gemini": ProviderKind(
        host=_fixed("generativelanguage.googleapis.com"),
        path_prefix="",
        auth_header="x-goog-api-key",
        auth_prefix="",
    ),
    "vertexai": ProviderKind(
        host=_vertex_host,
        path_prefix="",
        ambient_auth="gcp",
        fields=("projectId", "region"),
        required=("projectId",),
        defaults={"region": "global"},
    ),
    "bedrock": ProviderKind(
        host=lambda s: f"bedrock-runtime.{s.get('region', 'us-east-1')}.amazonaws.com",
        path_prefix="",
        ambient_auth="aws",
        fields=("region", "guardrailIdentifier", "guardrailVersion"),
        defaults={"region": "us-east-1"},
    ),
    "azureopenai": ProviderKind(
        host=_endpoint_host,
        path_prefix="",
        auth_header="api-key",
        auth_prefix="",
        ambient_auth="azure",
        fields=("endpoint", "deploymentName", "apiVersion"),
        required=("endpoint",),
        direct=True,
    ),
    "azure": ProviderKind(
        host=_azure_host,
        path_prefix="",
        auth_header="api-key",
        auth_prefix="",
        ambient_auth="azure",
        fields=("resourceName", "resourceType", "projectName", "apiVersion"),
        required=("resourceName",),
        defaults={"resourceType": "OpenAI"},
        direct=True,
    ),
}


def settings_of(kind: ProviderKind, block: Mapping[str, Any]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(settings, [(field, problem)]) from a provider-kind block such as `bedrock: {region: ...}`."""
    settings = dict(kind.defaults)
    problems: list[tuple[str, str]] = []
    flat = dict(block)
    guardrail = flat.pop("guardrail", None)
    if isinstance(guardrail, Mapping):
        flat["guardrailIdentifier"] = guardrail.get("identifier", "")
        flat["guardrailVersion"] = guardrail.get("version", "")
    for name in kind.fields:
        value = flat.get(name)
        if value is None:
            continue
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            problems.append((name, "must be a non-empty string"))
            continue
        settings[name] = str(value)
    problems.extend((name, "is required") for name in kind.required if not settings.get(name))
    if "resourceType" in settings and settings["resourceType"] not in ("OpenAI", "Foundry"):
        problems.append(("resourceType", "must be OpenAI or Foundry"))
    if settings.get("resourceType") == "Foundry" and "projectName" in kind.fields and not settings.get("projectName"):
        problems.append(("projectName", "is required when resourceType is Foundry"))
    return settings, problems
