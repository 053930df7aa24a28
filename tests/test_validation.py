"""Client input that must be a 400 in the client's schema, and bugs that must stay a visible 500.

Units of `extproc.validation`, the two stages driven with real ext_proc protos,
and a seeded mutation fuzz over every translation pair: whatever JSON a client
sends, a pair returns a request or raises `TranslationError`, nothing else.
The decisions per field are in docs/validation.md.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import validation
from extproc.attempt_stage import AttemptRequest
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.router_stage import RouterRequest
from extproc.translate import PAIRS, anthropic_openai, openai_anthropic, select
from extproc.translate.base import RequestContext, TranslationError, UpstreamRequest, encode
from extproc.wire import MODEL_HEADER
from tests.extproc_protos import (
    CLIENT_HEADERS,
    GATEWAY,
    PROVIDER_ID,
    attributes,
    body_msg,
    header_sets,
    host_metadata_text,
    http_headers,
    immediate_json,
    make_config,
)
from tests.fuzzing import ANTHROPIC, OPENAI_CHAT, deep, dumps, mutated

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def rejected(body: dict[str, Any], *, client_api: str = "openai", op: str = "chat_completions") -> TranslationError:
    with pytest.raises(TranslationError) as err:
        validation.check_translated(body, client_api=client_api, op=op)
    assert err.value.status == 400
    return err.value


# --- model: what may be copied into a header --------------------------------------------------


@pytest.mark.parametrize("model", ["a\r\nb", "a\nx-injected: 1", "a\x00b", "a\x7fb", "a\x01b", "a\tb", "m\r"])
def test_model_with_control_characters_is_rejected(model: str) -> None:
    assert validation.model_problem(model) is not None
    with pytest.raises(TranslationError) as err:
        validation.check_routing_fields({"model": model}, streams=True, stream_usage_option=True)
    assert (err.value.code, err.value.param) == ("invalid_model", "model")


@pytest.mark.parametrize(
    "model",
    ["gpt-4o", "ft:gpt-4o-mini:org::abc", "projects/p/locations/l/models/x@001", "é模型", "a b", "m" * 1024],
)
def test_ordinary_models_pass(model: str) -> None:
    assert validation.model_problem(model) is None


def test_model_size_is_bounded_in_bytes() -> None:
    assert validation.model_problem("m" * (validation.MAX_MODEL_BYTES + 1)) is not None
    assert validation.model_problem("é" * 600) is not None  # 1200 bytes in UTF-8
    problem = validation.model_problem("m" * 70_000)
    assert problem is not None and "70000 bytes" in problem


# --- stream / stream_options: what the gateway acts on, on every route ------------------------


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, [], {}])
def test_stream_must_be_boolean(value: object) -> None:
    with pytest.raises(TranslationError) as err:
        validation.check_routing_fields({"stream": value}, streams=True, stream_usage_option=False)
    assert err.value.param == "stream"


@pytest.mark.parametrize("value", [True, False, None])
def test_stream_boolean_or_null_passes(value: object) -> None:
    validation.check_routing_fields({"stream": value}, streams=True, stream_usage_option=True)


def test_stream_not_checked_where_the_operation_does_not_stream() -> None:
    validation.check_routing_fields({"stream": "yes", "stream_options": 3}, streams=False, stream_usage_option=False)


def test_stream_options_must_be_an_object() -> None:
    with pytest.raises(TranslationError) as err:
        validation.check_routing_fields({"stream_options": "junk"}, streams=True, stream_usage_option=True)
    assert err.value.param == "stream_options"


# --- translated routes: OpenAI client ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "abc"),
        ("max_tokens", 1.5),
        ("max_tokens", True),
        ("max_completion_tokens", "100"),
        ("temperature", "hot"),
        ("temperature", False),
        ("top_p", [1]),
        ("n", "2"),
        ("seed", 1.5),
        ("presence_penalty", "x"),
        ("stop", 5),
        ("stop", ["a", 1]),
        ("user", 5),
        ("reasoning_effort", 3),
        ("parallel_tool_calls", "no"),
        ("response_format", "json"),
        ("tools", 1),
        ("tools", {"type": "function"}),
    ],
)
def test_openai_field_types(field: str, value: object) -> None:
    assert rejected({**CHAT, field: value}).param == field


@pytest.mark.parametrize("field", ["max_tokens", "temperature", "stop", "tools", "response_format", "user"])
def test_openai_null_means_not_set(field: str) -> None:
    validation.check_translated({**CHAT, field: None}, client_api="openai", op="chat_completions")


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (5, "messages"),
        ([], "messages"),
        ({"role": "user"}, "messages"),
        ([1], "messages[0]"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": 1, "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": {}}], "messages[0].content"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": [1]}], "messages[0].content[0]"),
        ([{"role": "user", "content": [{"text": "x"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages[0].content[0].text"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "messages[0].content[0].image_url.url",
        ),
        ([{"role": "user", "content": "x", "name": 5}], "messages[0].name"),
        ([{"role": "assistant", "tool_calls": 5}], "messages[0].tool_calls"),
        ([{"role": "assistant", "tool_calls": [5]}], "messages[0].tool_calls[0]"),
        ([{"role": "assistant", "tool_calls": [{"id": "c"}]}], "messages[0].tool_calls[0].function"),
        ([{"role": "assistant", "tool_calls": [{"function": {"name": 1}}]}], "messages[0].tool_calls[0].function.name"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}],
            "messages[0].tool_calls[0].function.arguments",
        ),
        ([{"role": "tool", "content": "r"}], "messages[0].tool_call_id"),
    ],
)  # fmt: skip
def test_openai_messages_shapes(messages: object, param: str) -> None:
    assert rejected({**CHAT, "messages": messages}).param == param


def test_openai_role_error_names_the_known_roles() -> None:
    err = rejected({**CHAT, "messages": [{"role": "wizard", "content": "x"}]})
    assert err.code == "invalid_role"
    assert "'wizard'" in err.message and "assistant" in err.message


def test_openai_long_bad_values_are_not_echoed_whole() -> None:
    err = rejected({**CHAT, "messages": [{"role": "w" * 100_000, "content": "x"}]})
    assert len(err.message) < 300


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f"}}]}],
        [{"role": "developer", "content": [{"type": "text", "text": "x"}]}, {"role": "user", "content": "x"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]}],
        [{"role": "user", "content": [{"type": "something_new", "x": 1}]}],  # unknown part: the pair decides
        [{"role": "function", "name": "f", "content": None}],
        [{"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]}],
    ],
)
def test_openai_valid_messages_pass(messages: list[Any]) -> None:
    validation.check_translated({**CHAT, "messages": messages}, client_api="openai", op="chat_completions")


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        ([5], None, "tools[0]"),
        ([{"type": "function"}], None, "tools[0].function"),
        ([{"type": "function", "function": {"description": "d"}}], None, "tools[0].function.name"),
        ([{"function": {"name": "f", "parameters": "x"}}], None, "tools[0].function.parameters"),
        (None, "sometimes", "tool_choice"),
        (None, 5, "tool_choice"),
        (None, {"type": "function"}, "tool_choice.function"),
        (None, {"type": "function", "function": {"name": 3}}, "tool_choice.function.name"),
    ],
)
def test_openai_tools_shapes(tools: object, choice: object, param: str) -> None:
    assert rejected({**CHAT, "tools": tools, "tool_choice": choice}).param == param


def test_openai_other_tool_kinds_pass() -> None:
    tools = [{"googleSearch": {}}, {"type": "web_search"}, {"type": "function", "function": {"name": "f"}}]
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    validation.check_translated(
        {**CHAT, "tools": tools, "tool_choice": choice}, client_api="openai", op="chat_completions"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [({"input": 5}, "input"), ({"input": []}, "input"), ({"input": [1, 2]}, "input"), ({"input": ["a", 1]}, "input")],
)
def test_openai_embeddings_on_translated_routes(body: dict[str, Any], param: str) -> None:
    assert rejected({"model": "e", **body}, op="embeddings").param == param


def test_openai_embeddings_token_ids_say_so() -> None:
    assert rejected({"model": "e", "input": [[1, 2], [3]]}, op="embeddings").code == "unsupported_input"


def test_openai_completions_prompt_type() -> None:
    assert rejected({"model": "m", "prompt": {"x": 1}}, op="completions").param == "prompt"
    validation.check_translated({"model": "m", "prompt": ["a", "b"]}, client_api="openai", op="completions")


# --- translated routes: Anthropic client ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": "abc"}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_k": 1.5}, "top_k"),
        ({"stop_sequences": "x"}, "stop_sequences"),
        ({"metadata": "u"}, "metadata"),
        ({"tools": {}}, "tools"),
        ({"tools": [1]}, "tools[0]"),
        ({"tools": [{"name": 5}]}, "tools[0].name"),
        ({"tools": [{"name": "f", "input_schema": "x"}]}, "tools[0].input_schema"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": {"name": "f"}}, "tool_choice.type"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "text"}]}, "system[0].text"),
        ({"system": ["x"]}, "system[0]"),
        ({"messages": 5}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [1]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": {}}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]},
            "messages[0].content[0].source",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": 1}]}]},  # noqa: E501
            "messages[0].content[0].input",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "r"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [2]}]}]},
            "messages[0].content[0].content[0]",
        ),
    ],
)  # fmt: skip
def test_anthropic_shapes(change: dict[str, Any], param: str) -> None:
    assert rejected({**MESSAGES, **change}, client_api="anthropic", op="messages").param == param


def test_anthropic_unknown_block_types_pass() -> None:
    content = [{"type": "thinking", "thinking": "...", "signature": "s"}, {"type": "text", "text": "t"}]
    body = {**MESSAGES, "messages": [{"role": "assistant", "content": content}], "top_k": 5, "service_tier": "auto"}
    validation.check_translated(body, client_api="anthropic", op="messages")


def test_unknown_operations_are_not_checked() -> None:
    validation.check_translated({"anything": 5}, client_api="openai_responses", op="responses")


# --- re-serialization -------------------------------------------------------------------------


def test_encode_turns_deep_nesting_into_a_client_error() -> None:
    encode({"x": deep(validation_depth := 254 - 1)})  # within orjson's limit with the wrapping object
    with pytest.raises(TranslationError) as err:
        encode({"x": deep(validation_depth + 10)})
    assert err.value.code == "nesting_too_deep" and err.value.status == 400


def test_encode_keeps_our_own_bugs_visible() -> None:
    with pytest.raises(TypeError) as err:
        encode({"x": object()})
    assert not isinstance(err.value, TranslationError)


# --- router stage ------------------------------------------------------------------------------


def _router(path: str = "/v1/chat/completions", config: ExtprocConfig | None = None, route: str | None = None):
    rr = RouterRequest(gateway=GATEWAY, config=config or make_config())
    rr.on_request_headers(
        http_headers({":method": "POST", ":path": path, ":authority": "gw", "content-type": "application/json"}),
        route_name=route,
    )
    return rr


@pytest.mark.parametrize("model", ["a\r\nb", "a\x00b", "a\x7f", "m" * 70_000])
def test_router_rejects_a_model_that_is_no_header_value(model: str) -> None:
    status, doc = immediate_json(_router().on_request_body(body_msg({**CHAT, "model": model})))
    assert status == 400
    assert doc["error"]["code"] == "invalid_model" and doc["error"]["param"] == "model"
    status, doc = immediate_json(_router("/v1/messages").on_request_body(body_msg({**MESSAGES, "model": model})))
    assert status == 400 and doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"


def test_router_unknown_operation_keeps_going_without_the_bad_model_header() -> None:
    resp = _router("/v1/files").on_request_body(body_msg({"model": "a\r\nb"}))
    mutation = resp.request_body.response.header_mutation
    assert MODEL_HEADER in mutation.remove_headers and MODEL_HEADER not in header_sets(mutation)


@pytest.mark.parametrize("stream", ["yes", 1])
def test_router_rejects_a_stream_that_is_no_boolean(stream: object) -> None:
    status, doc = immediate_json(_router().on_request_body(body_msg({**CHAT, "stream": stream})))
    assert status == 400 and doc["error"]["param"] == "stream" and "boolean" in doc["error"]["message"]
    status, doc = immediate_json(_router("/v1/messages").on_request_body(body_msg({**MESSAGES, "stream": stream})))
    assert status == 400 and doc["type"] == "error"


def test_router_same_schema_route_passes_unknown_and_odd_fields() -> None:
    body = {**CHAT, "temperature": "hot", "max_tokens": "abc", "messages": [{"role": "wizard", "content": 1}], "x": 1}
    resp = _router().on_request_body(body_msg(body))
    assert resp.WhichOneof("response") == "request_body"
    assert header_sets(resp.request_body.response.header_mutation)[MODEL_HEADER] == "m"


@pytest.fixture
def broken_routing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def boom(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug of ours")

    monkeypatch.setattr(validation, "check_routing_fields", boom)
    yield


@pytest.mark.usefixtures("broken_routing")
@pytest.mark.parametrize(("path", "anthropic"), [("/v1/chat/completions", False), ("/v1/messages", True)])
def test_router_bug_is_a_logged_500_in_the_client_schema(
    path: str, anthropic: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="llmgw.extproc"):
        status, doc = immediate_json(_router(path).on_request_body(body_msg(MESSAGES)))
    assert status == 500
    if anthropic:
        assert doc == {"type": "error", "error": {"type": "api_error", "message": doc["error"]["message"]}}
    else:
        assert doc["error"]["code"] == "gateway_error" and doc["error"]["type"] == "server_error"
    [record] = caplog.records
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])


# --- attempt stage -----------------------------------------------------------------------------


def _config(kind: str, **kw: Any) -> ExtprocConfig:
    config = make_config(kind=kind, **kw)
    return replace(config, direct_routes={"direct-route": PROVIDER_ID})


def _attempt(config: ExtprocConfig, path: str) -> AttemptRequest:
    attrs = attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)})
    req = ep.ProcessingRequest(request_headers=http_headers({**CLIENT_HEADERS, ":path": path}), attributes=attrs)
    ar = AttemptRequest(config=config)
    assert ar.on_request_headers(req).WhichOneof("response") == "request_headers"
    return ar


def _sent(resp: ep.ProcessingResponse) -> dict[str, Any] | None:
    assert resp.WhichOneof("response") == "request_body", resp
    common = resp.request_body.response
    return orjson.loads(common.body_mutation.body) if common.HasField("body_mutation") else None


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tools": 1}, "tools"),
        ({"messages": 5}, "messages"),
        ({"messages": [1]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": {}}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": "abc"}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
    ],
)
def test_attempt_openai_to_anthropic_rejects_in_openai_schema(change: dict[str, Any], param: str) -> None:
    ar = _attempt(_config("anthropic"), "/v1/chat/completions")
    status, doc = immediate_json(ar.on_request_body(body_msg({**CHAT, **change})))
    assert status == 400
    assert doc["error"]["type"] == "invalid_request_error" and doc["error"]["param"] == param


def test_attempt_openai_to_anthropic_deep_nesting_is_400() -> None:
    ar = _attempt(_config("anthropic"), "/v1/chat/completions")
    part = {"type": "custom", "x": deep(300)}  # an unknown part: kept for Anthropic to judge, so re-encoded
    status, doc = immediate_json(
        ar.on_request_body(body_msg_deep({**CHAT, "messages": [{"role": "user", "content": [part]}]}))
    )
    assert status == 400 and doc["error"]["code"] == "nesting_too_deep"


def body_msg_deep(body: dict[str, Any]) -> ep.HttpBody:
    """A body deeper than orjson.dumps can write (orjson.loads reads up to 1024 levels)."""
    return ep.HttpBody(body=dumps(body), end_of_stream=True)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": "abc"}, "max_tokens"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]"),
    ],
)
def test_direct_anthropic_to_openai_rejects_in_anthropic_schema(change: dict[str, Any], param: str) -> None:
    rr = _router("/v1/messages", _config("openai"), route="direct-route")
    assert rr.direct is not None
    status, doc = immediate_json(rr.on_request_body(body_msg({**MESSAGES, **change})))
    assert status == 400
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert param in doc["error"]["message"]


def test_direct_anthropic_to_openai_deep_nesting_is_400_in_anthropic_schema() -> None:
    rr = _router("/v1/messages", _config("openai"), route="direct-route")
    body = {**MESSAGES, "x": deep(300)}  # unknown fields pass through, so the body is re-encoded with it
    status, doc = immediate_json(rr.on_request_body(body_msg_deep(body)))
    assert status == 400 and doc["type"] == "error" and "nested too deeply" in doc["error"]["message"]


def test_same_schema_route_passes_odd_values_unchanged() -> None:
    body = {**CHAT, "temperature": "hot", "max_tokens": "abc", "messages": [{"role": "wizard", "content": {}}]}
    assert _sent(_attempt(_config("openai"), "/v1/chat/completions").on_request_body(body_msg(body))) is None
    sent = _sent(_attempt(_config("openai", model="m2"), "/v1/chat/completions").on_request_body(body_msg(body)))
    assert sent == {**body, "model": "m2"}  # patched, not judged


def test_same_schema_deep_body_passes_when_not_patched_and_is_400_when_it_must_be() -> None:
    body = {**CHAT, "x": deep(300)}
    assert _sent(_attempt(_config("openai"), "/v1/chat/completions").on_request_body(body_msg_deep(body))) is None
    ar = _attempt(_config("openai", model="m2"), "/v1/chat/completions")
    status, doc = immediate_json(ar.on_request_body(body_msg_deep(body)))
    assert status == 400 and doc["error"]["code"] == "nesting_too_deep"


@pytest.mark.parametrize(
    ("kind", "path", "body"), [("anthropic", "/v1/chat/completions", CHAT), ("openai", "/v1/messages", MESSAGES)]
)
def test_attempt_bug_is_a_logged_500_in_the_client_schema(
    kind: str, path: str, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pair = openai_anthropic.PAIR if kind == "anthropic" else anthropic_openai.PAIR

    def boom(*args: object) -> UpstreamRequest:
        raise AttributeError("a bug of ours")

    monkeypatch.setattr(pair, "request", boom)
    ar = _attempt(_config(kind), path)
    with caplog.at_level(logging.ERROR, logger="llmgw.extproc"):
        status, doc = immediate_json(ar.on_request_body(body_msg(body)))
    assert status == 500
    if path.endswith("/messages"):
        assert doc["type"] == "error" and doc["error"]["type"] == "api_error"
    else:
        assert doc["error"]["code"] == "gateway_error"
    [record] = caplog.records
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])


# --- every pair, fuzzed --------------------------------------------------------------------------


def _provider(kind: str, **kw: Any) -> ProviderConfig:
    return ProviderConfig(id="ns/b/p", backend="ns/b", kind=kind, host="h", **kw)


# (client API, provider API, operation, provider, a valid body to mutate)
FUZZ_CASES: list[tuple[str, str, str, ProviderConfig, dict[str, Any]]] = [
    ("openai", "anthropic", "chat_completions", _provider("anthropic"), OPENAI_CHAT),
    ("openai", "vertex_anthropic", "chat_completions", _provider("vertexai", settings={"projectId": "p"}), OPENAI_CHAT),
    ("openai", "gemini", "chat_completions", _provider("gemini"), OPENAI_CHAT),
    ("openai", "gemini", "completions", _provider("gemini"), {"model": "m", "prompt": "hello", "max_tokens": 5}),
    ("openai", "gemini", "embeddings", _provider("vertexai"), {"model": "m", "input": ["a"], "dimensions": 8}),
    ("openai", "bedrock", "chat_completions", _provider("bedrock"), OPENAI_CHAT),
    ("openai", "bedrock_titan", "embeddings", _provider("bedrock"), {"model": "m", "input": "a", "dimensions": 8}),
    ("openai", "openai", "chat_completions", _provider("openai", model="o"), {**OPENAI_CHAT, "stream": True}),
    ("anthropic", "openai", "messages", _provider("openai"), ANTHROPIC),
    ("anthropic", "anthropic", "messages", _provider("anthropic", model="o"), ANTHROPIC),
]


@pytest.mark.parametrize("validated", [True, False], ids=["validated", "pair-alone"])
@pytest.mark.parametrize(
    ("client", "provider_api", "op", "provider", "seed"),
    FUZZ_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3].kind}" for c in FUZZ_CASES],
)
def test_pairs_answer_any_json_with_a_request_or_a_translation_error(
    client: str, provider_api: str, op: str, provider: ProviderConfig, seed: dict[str, Any], validated: bool
) -> None:
    """Seeded: the same bodies every run. A pair alone must not crash either (its unit tests call it directly)."""
    pair = select(client, provider_api)
    assert pair is not None and (client, provider_api) in PAIRS
    rng = random.Random(f"{client}-{provider_api}-{op}-{provider.kind}")
    outcomes = {"sent": 0, "rejected": 0}
    for _ in range(300):
        body = mutated(seed, rng)
        if not isinstance(body.get("model"), str) or not body["model"]:
            body["model"] = "m"  # the router stage answers a missing model before any pair runs
        ctx = RequestContext(provider=provider, op=op, model=provider.model or "m", stream=body.get("stream") is True)
        try:
            if validated:
                validation.check_routing_fields(
                    body, streams=op != "embeddings", stream_usage_option=client == "openai"
                )
                if pair.client_api != pair.provider_api:
                    validation.check_translated(body, client_api=client, op=op)
            up = pair.request(body, ctx)
        except TranslationError as exc:
            assert exc.status == 400 and exc.message
            outcomes["rejected"] += 1
            continue
        assert up.body is None or isinstance(orjson.loads(up.body), dict)
        outcomes["sent"] += 1
    assert outcomes["sent"], outcomes
    if validated:
        assert outcomes["rejected"], outcomes  # the mutations reach both outcomes
