"""Translation between client APIs and provider APIs, one module per pair.

`select` looks the pair up in one ordered table (DESIGN convention 3):
adding a pair is one module, one line here, its fixtures and one test.
"""

from __future__ import annotations

from extproc.translate import (
    anthropic_anthropic,
    anthropic_openai,
    openai_anthropic,
    openai_bedrock,
    openai_bedrock_titan,
    openai_gemini,
    openai_openai,
)
from extproc.translate.base import Pair

# (client API, provider API) -> pair. Client APIs: "openai" (chat/completions/embeddings),
# "anthropic" (Messages). Provider APIs come from the provider modules (extproc.providers).
PAIRS: dict[tuple[str, str], Pair] = {
    ("openai", "anthropic"): openai_anthropic.PAIR,
    ("anthropic", "anthropic"): anthropic_anthropic.PAIR,
    ("openai", "vertex_anthropic"): openai_anthropic.VERTEX_PAIR,
    ("openai", "gemini"): openai_gemini.PAIR,
    ("openai", "bedrock"): openai_bedrock.PAIR,
    ("openai", "bedrock_titan"): openai_bedrock_titan.PAIR,
    ("openai", "openai"): openai_openai.PAIR,
    ("openai_responses", "openai"): openai_openai.PAIR,
    ("anthropic", "openai"): anthropic_openai.PAIR,
}


def select(client_api: str, provider_api: str) -> Pair | None:
    return PAIRS.get((client_api, provider_api))
