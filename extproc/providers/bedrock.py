"""Amazon Bedrock (`bedrock`): Converse for chat, InvokeModel for Titan text embeddings.

Thin, like every provider module: it names the API a request speaks upstream
(which selects the translation pair), builds the path, and reads the
provider block's settings (`region`, `guardrail`). Host and TLS are Envoy's;
the SigV4 signature is `extproc.credentials.aws`'s, over the translated body.

Paths (the model id is one URL path segment, percent-encoded, so inference
profile ARNs such as `arn:aws:bedrock:us-east-1:123:inference-profile/us.x`
and ids with `:` stay one segment, as the AWS SDKs send them):

- chat completions: `/model/{id}/converse`, or `/model/{id}/converse-stream` when streaming;
- embeddings: `/model/{id}/invoke` (Titan Text Embeddings take one input per call).

Operations Bedrock has no pair for get an API name no pair claims, so the
attempt stage answers them with a clear 400 naming it. `pathPrefix` does not
apply (Bedrock paths have no version prefix); `path` overrides everything.
Bedrock's `inputTokens` exclude cache reads and writes.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

from extproc.contract import ProviderConfig
from extproc.operations import Operation

# The operations the gateway forwards to this kind (extproc.operations.refusal); the rest get a 4xx.
operations = frozenset({"chat_completions", "embeddings"})
input_includes_cached = False

DEFAULT_REGION = "us-east-1"
SIGNING_SERVICE = "bedrock"  # the SigV4 service name of bedrock-runtime


def api(provider: ProviderConfig, op: Operation, model: str) -> str:
    if op.name == "chat_completions" or op.client_api == "anthropic":
        return "bedrock"
    if op.name == "embeddings":
        # Titan Text Embeddings (v1/v2) share the InvokeModel body; other embedding
        # families (Cohere, Nova) have their own and no pair yet.
        return "bedrock_titan" if "titan-embed" in model else "bedrock_invoke"
    return f"bedrock_{op.name}"


def path(provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
    if provider.path:
        return provider.path
    model_id = quote(model, safe="")
    if op.name == "embeddings":
        return f"/model/{model_id}/invoke"
    return f"/model/{model_id}/converse-stream" if stream else f"/model/{model_id}/converse"


def region(provider: ProviderConfig) -> str:
    """The signing region: the auth policy's `region`, else the provider's `region`, else us-east-1."""
    params = provider.auth.params if provider.auth else {}
    return params.get("region") or provider.settings.get("region") or DEFAULT_REGION


def guardrail_config(provider: ProviderConfig | None) -> dict[str, str] | None:
    """`guardrailConfig` for the Converse body from the provider block's `guardrail`, or None.

    The settings carry manifest field names; a nested block may arrive flattened
    (`guardrail.identifier`), as JSON (`guardrail`), or as agentgateway's flat
    `guardrailIdentifier` / `guardrailVersion`. A missing version means the
    working draft (`DRAFT`), as in the Bedrock console.
    """
    if provider is None:
        return None
    settings = provider.settings
    identifier = settings.get("guardrailIdentifier") or settings.get("guardrail.identifier")
    version = settings.get("guardrailVersion") or settings.get("guardrail.version")
    nested = settings.get("guardrail")
    if not identifier and nested:
        try:
            block = orjson.loads(nested)
        except orjson.JSONDecodeError:
            block = None
        if isinstance(block, dict):
            identifier = str(block.get("identifier") or "")
            version = version or str(block.get("version") or "")
    if not identifier:
        return None
    return {"guardrailIdentifier": identifier, "guardrailVersion": version or "DRAFT"}
