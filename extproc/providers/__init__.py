"""Provider modules by `AIBackend` provider kind (one line each)."""

from __future__ import annotations

from types import ModuleType

from extproc.providers import anthropic, azure, bedrock, gemini, openai, vertexai

PROVIDERS: dict[str, ModuleType] = {
    "anthropic": anthropic,
    "gemini": gemini,
    "vertexai": vertexai,
    "bedrock": bedrock,
    "openai": openai,
    "custom": openai,
    "azureopenai": azure,
    "azure": azure,
}


def module_for(kind: str) -> ModuleType | None:
    return PROVIDERS.get(kind)
