"""Anthropic (api.anthropic.com): every chat-like operation goes to the Messages API.

Anthropic clients (`/messages`) are passed through; OpenAI chat clients are
translated by `extproc.translate.openai_anthropic`. Both land on one upstream
path, Anthropic's own `/v1/messages` after the backend's `pathPrefix` (empty by
default; set it when a proxy serves Anthropic under a prefix), whatever suffix
the client used. Anthropic clients' token counting (`/messages/count_tokens`) goes
to `/v1/messages/count_tokens` beside it. Anthropic's `input_tokens` excludes cache reads and writes, so
the pairs add them back when they normalize usage (DESIGN convention 5).
"""

from __future__ import annotations

from extproc.contract import ProviderConfig
from extproc.operations import Operation, split_path

# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "messages", "count_tokens"})
input_includes_cached = False
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    return "anthropic"


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if op.name == "count_tokens":  # `path` names the Messages endpoint; counting sits beside it
        if provider.path:
            bare, query = split_path(provider.path)
            return bare.rstrip("/") + "/count_tokens" + query
        return provider.path_prefix.rstrip("/") + COUNT_TOKENS_PATH
    if provider.path:
        return provider.path
    return provider.path_prefix.rstrip("/") + MESSAGES_PATH
