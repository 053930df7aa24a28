"""Which operation a path names (`extproc.operations`), and what each operation needs."""

from __future__ import annotations

import pytest

from extproc.operations import OPERATIONS, PASSTHROUGH, operation_of, refusal, route_type


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
        ("/v1/messages/count_tokens", "count_tokens"),
        ("/v1/messages/batches", None),
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


@pytest.mark.parametrize(
    ("method", "path", "supported", "status"),
    [
        ("POST", "/v1/chat/completions", None, None),
        ("GET", "/v1/models", None, None),
        ("POST", "/v1/chat/completions?x=1", frozenset({"chat_completions"}), None),
        ("GET", "/v1/chat/completions", None, 405),
        ("POST", "/v1/models", None, 405),
        ("HEAD", "/v1/embeddings", None, 405),
        ("POST", "/v1/files", None, 404),
        ("POST", "/v1/fine_tuning/jobs", None, 404),
        ("GET", "/v1/models/gpt-4o", None, 404),
        ("POST", "/anything", None, 404),
        ("POST", "/v1/embeddings", frozenset({"chat_completions", "messages"}), 400),
    ],
)  # fmt: skip
def test_refusal_is_the_operation_allowlist(
    method: str, path: str, supported: frozenset[str] | None, status: int | None
) -> None:
    got = refusal(method, path, supported)
    assert (got.status if got else None) == status


def test_refusal_speaks_anthropic_on_messages_paths() -> None:
    wrong_method = refusal("GET", "/v1/messages")
    unknown = refusal("POST", "/v1/messages/batches")
    assert wrong_method is not None and wrong_method.anthropic
    assert unknown is not None and unknown.anthropic and unknown.status == 404
    chat = refusal("GET", "/v1/chat/completions")
    assert chat is not None and not chat.anthropic


def test_every_operation_has_one_method_and_only_models_is_a_get() -> None:
    assert {op.name for op in OPERATIONS if op.method == "GET"} == {"models"}
    assert {op.method for op in OPERATIONS} == {"GET", "POST"}


def test_provider_model_applies_to_chat_like_operations_only() -> None:
    assert {op.name for op in OPERATIONS if op.chat_like} == {
        "chat_completions",
        "completions",
        "messages",
        "count_tokens",
        "responses",
    }


ROUTES = (
    ("*", PASSTHROUGH),
    ("/v1/models", PASSTHROUGH),
    ("/openai/gpt-4o", "chat_completions"),
    ("/v1/files", PASSTHROUGH),
)


def test_routes_map_longest_suffix_first_and_wildcard_last() -> None:
    assert route_type("/v1/files?x=1", ROUTES) == PASSTHROUGH
    assert route_type("/openai/gpt-4o", ROUTES) == "chat_completions"
    assert route_type("/anything/else", ROUTES) == PASSTHROUGH  # the wildcard
    assert route_type("/anything/else", ROUTES[1:]) is None
    op = operation_of("/openai/gpt-4o", ROUTES)
    assert op is not None and op.name == "chat_completions"
    assert operation_of("/v1/models", ROUTES) is None  # passthrough: no operation of ours
    assert operation_of("/v1/chat/completions", ROUTES[1:]) is not None  # unmapped: the suffix decides


def test_passthrough_is_the_only_way_past_the_allowlist() -> None:
    assert refusal("POST", "/v1/files", routes=ROUTES[1:]) is None
    assert refusal("DELETE", "/v1/files/f-1", routes=ROUTES[1:]) is not None  # suffixes match the end only
    refused = refusal("GET", "/v1/batches", routes=ROUTES[1:])
    assert refused is not None and refused.status == 404
    assert refusal("GET", "/openai/gpt-4o", routes=ROUTES) is not None  # mapped to chat: POST only
