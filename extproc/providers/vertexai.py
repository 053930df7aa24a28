"""Google Vertex AI: Gemini models (`publishers/google`) and Claude models (`publishers/anthropic`).

Vertex puts project, location, publisher, model and method in the path. Which API the
body speaks depends on the publisher: Gemini models take the Gemini `generateContent`
body (the same pair as AI Studio), Claude models take Anthropic's Messages body through
`rawPredict` / `streamRawPredict` (the `vertex_anthropic` pair). Embeddings use the
Vertex text-embeddings `predict` method, the one every Vertex embedding model serves
(gemini-embedding-001, text-embedding-005, ...).

Host (`{region}-aiplatform.googleapis.com`, or `aiplatform.googleapis.com` for the
`global` location) and the OAuth token (auth kind `gcp`) are set elsewhere: the control
plane and `extproc.credentials.gcp`.
"""

from __future__ import annotations

from extproc.contract import ProviderConfig
from extproc.operations import Operation
from extproc.providers.gemini import model_segment

# Gemini's promptTokenCount includes cached tokens. Claude usage is normalized to totals by its pair.
# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "completions", "embeddings"})
input_includes_cached = True

DEFAULT_REGION = "global"


def is_anthropic(model: str) -> bool:
    return model.removeprefix("models/").startswith("claude")


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    return "vertex_anthropic" if is_anthropic(model) else "gemini"


def base(provider: ProviderConfig, publisher: str, model: str) -> str:
    """`/v1/projects/P/locations/R/publishers/PUB/models/M` from the provider's settings."""
    project = provider.settings.get("projectId", "")
    region = provider.settings.get("region") or DEFAULT_REGION
    return f"/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model_segment(model)}"


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if provider.path:
        return provider.path
    if is_anthropic(model):
        return base(provider, "anthropic", model) + (":streamRawPredict" if stream else ":rawPredict")
    if op.name == "embeddings":
        return base(provider, "google", model) + ":predict"
    return base(provider, "google", model) + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
