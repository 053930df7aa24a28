"""OpenAI and any OpenAI-compatible server (`openai`, `custom`): same schema, prefix + operation."""

from __future__ import annotations

from extproc.contract import ProviderConfig
from extproc.operations import Operation

# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "completions", "embeddings", "messages", "responses"})
input_includes_cached = True


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    return "openai"


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if provider.path:
        return provider.path
    return provider.path_prefix + op.suffix
