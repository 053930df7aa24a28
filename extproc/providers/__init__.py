"""Provider modules by `AIBackend` provider kind (one line each).

The kinds are those of controlplane/gatewayapi/provider_kinds.py `KINDS` (a test
holds the two and the CRD schema together); each module is checked against the
`ProviderModule` protocol by mypy through this table's type.
"""

from __future__ import annotations

from extproc.contract import ProviderConfig
from extproc.operations import Operation
from extproc.providers import anthropic, azure, bedrock, gemini, openai, vertexai
from extproc.providers.base import ProviderModule

PROVIDERS: dict[str, ProviderModule] = {
    "anthropic": anthropic,
    "gemini": gemini,
    "vertexai": vertexai,
    "bedrock": bedrock,
    "openai": openai,
    "custom": openai,
    "azureopenai": azure,
    "azure": azure,
}


def module_for(kind: str) -> ProviderModule | None:
    return PROVIDERS.get(kind)


def operations_of(provider: ProviderConfig) -> frozenset[str]:
    """The operations the gateway forwards to `provider` (none for a kind it has no module for)."""
    module = module_for(provider.kind)
    return module.operations if module is not None else frozenset()


def fixed_model(provider: ProviderConfig | None, op: Operation) -> str | None:
    """The model the backend fixes for `op`, replacing the client's, or None.

    A provider's `model` is a chat model: it applies to the chat-like operations
    (chat completions, completions, messages, responses). Embeddings keep the
    client's model.
    """
    if provider is not None and provider.model and op.chat_like:
        return provider.model
    return None


def default_model(provider: ProviderConfig | None, op: Operation) -> str | None:
    """What a request without `model` asks for on `provider`, or None when it must name one.

    The fixed model, else an Azure deployment (the deployment API names the model in
    the path, for every operation). The access log and metrics carry it.
    """
    fixed = fixed_model(provider, op)
    if fixed is not None or provider is None:
        return fixed
    if provider.kind in ("azureopenai", "azure") and not provider.path:
        return azure.deployment(provider, op)
    return None
