"""Which operation a path names (`extproc.operations`), and what each operation needs."""

from __future__ import annotations

import pytest

from extproc.operations import operation_of


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/chat/completions", "chat_completions"),
        ("/openai/v1/chat/completions?x=1", "chat_completions"),
        ("/v1/chat/completions/", "chat_completions"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/models", "models"),
        ("/v1/messages", "messages"),
        ("/v1/responses", "responses"),
        ("/v1/unknown", None),
        ("/", None),
        ("/v1/models/gpt-4o/extra?x=/chat/completions", None),
    ],
)
def test_operation_of(path: str, name: str | None) -> None:
    op = operation_of(path)
    assert (op.name if op else None) == name


def test_operation_properties() -> None:
    chat, emb, models = (operation_of(p) for p in ("/v1/chat/completions", "/v1/embeddings", "/v1/models"))
    assert chat is not None and chat.semconv == "chat" and chat.needs_model and chat.streams
    assert emb is not None and emb.semconv == "embeddings" and emb.needs_model and not emb.streams
    assert models is not None and not models.needs_model
