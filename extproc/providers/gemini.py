"""Google Gemini API (AI Studio, generativelanguage.googleapis.com): the model lives in the path.

Gemini names the model and the method in the URL (`/v1beta/models/{model}:generateContent`)
rather than in the body, so this module is where the OpenAI operation becomes a Gemini
method. Streaming asks for `alt=sse`, which makes Gemini answer with Server-Sent Events
(one `GenerateContentResponse` per event) instead of one long JSON array. The API key
goes in `x-goog-api-key`, which the control plane sets as this kind's default auth header.

Gemini's `promptTokenCount` includes the tokens served from a cached context
(`cachedContentTokenCount`), hence `input_includes_cached`.
"""

from __future__ import annotations

from urllib.parse import quote

from extproc.contract import ProviderConfig
from extproc.operations import Operation

# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "completions", "embeddings"})
input_includes_cached = True

API_VERSION = "v1beta"
GENERATE = "generateContent"
STREAM = "streamGenerateContent?alt=sse"
EMBED = "batchEmbedContents"


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    return "gemini"


def model_segment(model: str) -> str:
    """The model as a path segment: `models/` dropped (clients may send the resource name), escaped."""
    return quote(model.removeprefix("models/"), safe="-._~@")


def method(op: Operation, stream: bool) -> str:
    """The Gemini method (with its query) that serves an OpenAI operation."""
    if op.name == "embeddings":
        return EMBED
    return STREAM if stream else GENERATE


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if provider.path:
        return provider.path
    return f"/{API_VERSION}/models/{model_segment(model)}:{method(op, stream)}"
