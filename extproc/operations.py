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


OPERATIONS = (
    Operation("chat_completions", "/chat/completions", "chat", True, True, stream_usage_option=True),
    Operation("completions", "/completions", "text_completion", True, True, stream_usage_option=True),
    Operation("embeddings", "/embeddings", "embeddings", True, False),
    Operation("messages", "/messages", "chat", True, True, client_api="anthropic"),
    Operation("responses", "/responses", "chat", True, True, client_api="openai_responses"),
    Operation("models", "/models", "models", False, False),
)

OPERATIONS_BY_NAME = {op.name: op for op in OPERATIONS}


def split_path(path: str) -> tuple[str, str]:
    """(path without query, "?query" or "")."""
    i = path.find("?")
    return (path, "") if i < 0 else (path[:i], path[i:])


def operation_of(path: str) -> Operation | None:
    bare = split_path(path)[0].rstrip("/")
    for op in OPERATIONS:
        if bare.endswith(op.suffix):
            return op
    return None
