"""Provider modules by `AIBackend` provider kind (one line each).

The kinds are those of controlplane/gatewayapi/provider_kinds.py `KINDS` (a test
holds the two and the CRD schema together); each module is checked against the
`ProviderModule` protocol by mypy through this table's type.
"""

from __future__ import annotations

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
