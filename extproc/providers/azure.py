"""Azure OpenAI (`azureopenai`) and Azure OpenAI / AI Foundry by resource (`azure`).

Same schema as OpenAI; only the path differs. `apiVersion` unset or `v1`
selects the v1 API (`/openai/v1/...`, model in the body); any other version
selects the deployment API (`/openai/deployments/{deploymentName}/...?api-version=`).
A Foundry resource with a project is addressed under `/api/projects/{project}`.
The seed-style Foundry route (`host` + `path` such as
`/models/chat/completions?api-version=2024-05-01-preview`) is the provider's
`path`, used as given. Auth: `api-key` header for keys; Entra ID tokens come
from the `azure` credential kind.
"""

from __future__ import annotations

from urllib.parse import quote

from extproc.contract import ProviderConfig
from extproc.operations import Operation

# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "completions", "embeddings", "messages", "responses"})
input_includes_cached = True


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    return "openai"


def deployment(provider: ProviderConfig, op: Operation) -> str | None:
    """The model a request without one gets: the backend's `deploymentName`, or None.

    The deployment API names it in the path, for every operation; the v1 API takes it as
    the body's model, for the chat-like operations only (a chat deployment serves no embeddings).
    """
    name = provider.settings.get("deploymentName") or None
    version = provider.settings.get("apiVersion") or "v1"
    return name if version != "v1" or op.chat_like else None


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if provider.path:
        return provider.path
    settings = provider.settings
    version = settings.get("apiVersion") or "v1"
    base = ""
    if provider.kind == "azure" and settings.get("resourceType") == "Foundry" and settings.get("projectName"):
        base = f"/api/projects/{quote(settings['projectName'], safe='')}"
    if version == "v1":
        return f"{base}/openai/v1{op.suffix}"
    deployment = settings.get("deploymentName") or model
    return f"{base}/openai/deployments/{quote(deployment, safe='')}{op.suffix}?api-version={quote(version, safe='')}"
