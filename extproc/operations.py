"""Which API operation a request is, from its path suffix (DESIGN: "Operation by path")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str  # our name, also the path suffix
    suffix: str
    semconv: str  # gen_ai.operation.name
    needs_model: bool
    streams: bool  # may answer with SSE
    stream_usage_option: bool = False  # OpenAI `stream_options.include_usage` applies
    client_api: str = "openai"  # which schema the client speaks (errors, translation)
    method: str = "POST"  # the one HTTP method the gateway forwards for it
    # A provider's fixed `model` replaces the client's (embeddings keep theirs: a chat model is no embedding model)
    chat_like: bool = True


OPERATIONS = (
    Operation("chat_completions", "/chat/completions", "chat", True, True, stream_usage_option=True),
    Operation("completions", "/completions", "text_completion", True, True, stream_usage_option=True),
    Operation("embeddings", "/embeddings", "embeddings", True, False, chat_like=False),
    Operation("messages", "/messages", "chat", True, True, client_api="anthropic"),
    # Anthropic's token counting: same body as messages, answered by Anthropic itself (no translation).
    Operation("count_tokens", "/messages/count_tokens", "count_tokens", True, False, client_api="anthropic"),
    Operation("responses", "/responses", "chat", True, True, client_api="openai_responses"),
    Operation("models", "/models", "models", False, False, method="GET", chat_like=False),  # the gateway answers
)

OPERATIONS_BY_NAME = {op.name: op for op in OPERATIONS}

# A backend's `policies.ai.routes` (agentgateway): path suffix -> an operation name, or PASSTHROUGH
# (sent upstream as is, with the backend's credential, past the allowlist). "*" matches any path.
PASSTHROUGH = "passthrough"
WILDCARD = "*"
RouteTypes = tuple[tuple[str, str], ...]


def route_type(path: str, routes: RouteTypes) -> str | None:
    """What a backend's routes map makes of `path`: an operation name, PASSTHROUGH, or None (no entry).

    Longest suffix first, the wildcard last (as agentgateway resolves them).
    """
    bare = split_path(path)[0]
    wildcard = None
    for suffix, kind in sorted(routes, key=lambda r: (r[0] == WILDCARD, -len(r[0]))):
        if suffix == WILDCARD:
            wildcard = kind
        elif bare.endswith(suffix):
            return kind
    return wildcard


def split_path(path: str) -> tuple[str, str]:
    """(path without query, "?query" or "")."""
    i = path.find("?")
    return (path, "") if i < 0 else (path[:i], path[i:])


def operation_of(path: str, routes: RouteTypes = ()) -> Operation | None:
    """The operation of `path`: the backend's routes map first, then the path suffix (None: not ours)."""
    mapped = route_type(path, routes) if routes else None
    if mapped is not None:
        return OPERATIONS_BY_NAME.get(mapped)
    bare = split_path(path)[0].rstrip("/")
    for op in OPERATIONS:
        if bare.endswith(op.suffix):
            return op
    return None


@dataclass(frozen=True)
class Refusal:
    """Why the gateway will not forward a request: an error in the client's schema."""

    status: int
    code: str
    message: str
    anthropic: bool


def refusal(
    method: str, path: str, supported: frozenset[str] | None = None, kind: str = "", routes: RouteTypes = ()
) -> Refusal | None:
    """The operation allowlist: None when the gateway may forward `method path`, else why not.

    The gateway forwards only the operations it knows, each with its method (DESIGN: a
    client must not reach the provider's other endpoints, files, fine-tuning, batches,
    admin, with the gateway's credential). `supported`: the operations the provider
    kind serves (None: the provider is not known yet, as in the router stage on a
    model-routed request). `routes`: the backend's `policies.ai.routes`; a path it maps
    to Passthrough is the backend's explicit opt-in to raw passthrough, never refused.
    """
    bare = split_path(path)[0]
    if routes and route_type(bare, routes) == PASSTHROUGH:
        return None
    op = operation_of(bare, routes)
    anthropic = op.client_api == "anthropic" if op is not None else "/messages" in bare
    if op is None:
        return Refusal(404, "unknown_operation", f"The gateway does not serve {bare or '/'}.", anthropic)
    if method != op.method:
        return Refusal(
            405, "method_not_allowed", f"{op.suffix} accepts {op.method}, not {method or 'no method'}.", anthropic
        )
    if supported is not None and op.name not in supported:
        where = f"provider {kind!r}" if kind else "this backend"
        return Refusal(400, "unsupported_operation", f"The {op.suffix} API is not available on {where}.", anthropic)
    return None
