"""Translation between client APIs and provider APIs, one module per pair.

`pair_for` (through `select`) looks the pair up in one ordered table (DESIGN convention 3):
adding a pair is one module, one line here, its fixtures and one test.
"""

from __future__ import annotations

from extproc.contract import ProviderConfig
from extproc.operations import Operation
from extproc.providers import module_for
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


def pair_for(op: Operation, provider: ProviderConfig | None, model: str) -> Pair | None:
    """The pair for `op` sent to `provider` (asking for `model`); both stages choose through this.

    No provider (an Envoy local reply, metadata missing) or a kind without a module:
    the traffic is taken to be in the client's own schema.
    """
    module = module_for(provider.kind) if provider is not None else None
    if provider is None or module is None:
        return select(op.client_api, op.client_api)
    return select(op.client_api, module.api(provider, op, model))
