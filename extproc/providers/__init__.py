"""Provider modules by `AIBackend` provider kind (one line each)."""

from __future__ import annotations

from types import ModuleType

from extproc.providers import openai

PROVIDERS: dict[str, ModuleType] = {
    "openai": openai,
    "custom": openai,
}


def module_for(kind: str) -> ModuleType | None:
    return PROVIDERS.get(kind)
