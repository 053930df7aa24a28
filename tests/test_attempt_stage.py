"""The attempt stage (`extproc.attempt_stage`) driven with real ext_proc protos: the provider from endpoint
metadata, its credential instead of the client's, the upstream path, and the body patched idempotently."""

from __future__ import annotations

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.attempt_stage import AttemptRequest
from extproc.contract import AuthConfig, ExtprocConfig
from extproc.wire import MODEL_HEADER
from tests.extproc_protos import (
    CLIENT_HEADERS,
    PROVIDER_ID,
    attributes,
    body_msg,
    header_sets,
    host_metadata_text,
    http_headers,
    immediate_json,
    make_config,
)


def attempt_headers(
    config: ExtprocConfig,
    headers: dict[str, str],
    *,
    provider_id: str | None = PROVIDER_ID,
    body: bytes = b'{"model": "gpt-4o", "messages": []}',
) -> tuple[AttemptRequest, ep.ProcessingResponse]:
    """Both request phases; the returned headers response carries the header changes of both.

    The attempt stage sets path and credential in the body response (the final
    body must be known first), so what reaches the provider is their union.
    """
    attrs = attributes({"xds.upstream_host_metadata": host_metadata_text(provider_id)}) if provider_id else {}
    req = ep.ProcessingRequest(request_headers=http_headers(headers), attributes=attrs)
    ar = AttemptRequest(config=config)
    first = ar.on_request_headers(req)
    if first.WhichOneof("response") != "request_headers":
        return ar, first
    second = ar.on_request_body(ep.HttpBody(body=body, end_of_stream=True))
    if second.WhichOneof("response") != "request_body":
        return ar, second
    merged = ep.ProcessingResponse()
    merged.request_headers.response.header_mutation.CopyFrom(first.request_headers.response.header_mutation)
    merged.request_headers.response.header_mutation.MergeFrom(second.request_body.response.header_mutation)
    return ar, merged


def test_attempt_metadata_as_brief_text_format() -> None:
    """The exact shape from Envoy (one llmgw namespace only)."""
    text = (
        'filter_metadata { key: "llmgw" value { fields { key: "provider" value '
        '{ string_value: "default/b/openai" } } } }'
    )
    req = ep.ProcessingRequest(
        request_headers=http_headers(CLIENT_HEADERS), attributes=attributes({"xds.upstream_host_metadata": text})
    )
    ar = AttemptRequest(config=make_config())
    resp = ar.on_request_headers(req)
    assert resp.WhichOneof("response") == "request_headers"
    assert ar.provider is not None and ar.provider.id == PROVIDER_ID


def test_attempt_headers_replace_credentials() -> None:
    _, resp = attempt_headers(make_config(), CLIENT_HEADERS)
    assert resp.WhichOneof("response") == "request_headers"
    mutation = resp.request_headers.response.header_mutation
    removed = set(mutation.remove_headers)
    assert {"authorization", "api-key", "x-api-key", "x-goog-api-key", MODEL_HEADER} <= removed
    sets = header_sets(mutation)
    assert sets["authorization"] == "Bearer sk-provider"
    assert ":path" not in sets  # /v1 + /chat/completions is already the provider path


def test_attempt_headers_custom_auth_header() -> None:
    auth = AuthConfig(header="api-key", prefix="", value="azure-key")
    _, resp = attempt_headers(make_config(auth=auth), CLIENT_HEADERS)
    mutation = resp.request_headers.response.header_mutation
    assert header_sets(mutation)["api-key"] == "azure-key"
    assert "authorization" in mutation.remove_headers


def test_attempt_headers_no_auth_still_strips_client_credentials() -> None:
    _, resp = attempt_headers(make_config(auth=None), CLIENT_HEADERS)
    mutation = resp.request_headers.response.header_mutation
    assert "authorization" in mutation.remove_headers
    assert "authorization" not in header_sets(mutation)


@pytest.mark.parametrize(
    ("client_path", "provider_kw", "expected"),
    [
        ("/openai/v1/chat/completions?x=1", {}, "/v1/chat/completions?x=1"),
        ("/v1/chat/completions?api-version=2024", {"path_prefix": "/openai/deployments/d"},
         "/openai/deployments/d/chat/completions?api-version=2024"),
        ("/v1/embeddings", {"path_prefix": ""}, "/embeddings"),
        ("/v1/chat/completions?a=b", {"path": "/custom/endpoint"}, "/custom/endpoint?a=b"),
        ("/v1/chat/completions", {"path": "/custom/endpoint", "path_prefix": "/ignored"}, "/custom/endpoint"),
    ],
)  # fmt: skip
def test_attempt_headers_rewrite_path(client_path: str, provider_kw: dict, expected: str) -> None:
    _, resp = attempt_headers(make_config(**provider_kw), {**CLIENT_HEADERS, ":path": client_path})
    assert header_sets(resp.request_headers.response.header_mutation)[":path"] == expected


@pytest.mark.parametrize(
    ("kind", "path", "method", "status", "code"),
    [
        ("openai", "/v1/files?purpose=y", "POST", 404, "unknown_operation"),
        ("openai", "/v1/fine_tuning/jobs", "POST", 404, "unknown_operation"),
        ("gemini", "/anything", "POST", 404, "unknown_operation"),
        ("openai", "/v1/chat/completions", "GET", 405, "method_not_allowed"),
        ("openai", "/v1/models", "GET", 400, "unsupported_operation"),  # the router stage answers it
        ("anthropic", "/v1/embeddings", "POST", 400, "unsupported_operation"),
        ("bedrock", "/v1/responses", "POST", 400, "unsupported_operation"),
        ("gemini", "/v1/messages", "POST", 400, "unsupported_operation"),
    ],
)  # fmt: skip
def test_attempt_never_injects_a_credential_for_an_operation_it_does_not_forward(
    kind: str, path: str, method: str, status: int, code: str
) -> None:
    """Defence in depth behind the router stage (the path here is the rewritten one)."""
    _, resp = attempt_headers(make_config(kind=kind), {**CLIENT_HEADERS, ":path": path, ":method": method})
    got, doc = immediate_json(resp)
    assert got == status
    assert (doc["error"].get("code") or doc["error"]["type"]) in (code, "invalid_request_error", "not_found_error")
    assert "sk-provider" not in str(resp)


def test_attempt_missing_model_without_fixed_model_is_400() -> None:
    headers = {k: v for k, v in CLIENT_HEADERS.items() if k != MODEL_HEADER}
    _, resp = attempt_headers(make_config(), headers, body=b'{"messages": []}')
    status, doc = immediate_json(resp)
    assert status == 400 and doc["error"]["code"] == "missing_model"


def test_attempt_retry_without_the_model_header_reads_the_model_from_the_body() -> None:
    """A retried attempt sees the headers as the previous attempt left them (the model header removed)."""
    headers = {k: v for k, v in CLIENT_HEADERS.items() if k != MODEL_HEADER}
    _, resp = attempt_headers(make_config(), headers, body=b'{"model": "app-model", "messages": []}')
    assert resp.WhichOneof("response") == "request_headers"
    assert header_sets(resp.request_headers.response.header_mutation)["authorization"].startswith("Bearer ")


def test_attempt_missing_model_takes_the_fixed_model() -> None:
    headers = {k: v for k, v in CLIENT_HEADERS.items() if k != MODEL_HEADER}
    ar = AttemptRequest(config=make_config(model="gpt-4o-fixed"))
    req = ep.ProcessingRequest(
        request_headers=http_headers(headers),
        attributes=attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
    )
    assert ar.on_request_headers(req).WhichOneof("response") == "request_headers"
    resp = ar.on_request_body(body_msg({"model": "", "messages": []}))
    assert orjson.loads(resp.request_body.response.body_mutation.body)["model"] == "gpt-4o-fixed"


def test_attempt_azure_v1_deployment_fills_a_missing_model() -> None:
    headers = {k: v for k, v in CLIENT_HEADERS.items() if k != MODEL_HEADER}
    config = make_config(kind="azureopenai", settings={"deploymentName": "gpt-4o-prod"})
    ar = AttemptRequest(config=config)
    req = ep.ProcessingRequest(
        request_headers=http_headers(headers),
        attributes=attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
    )
    assert ar.on_request_headers(req).WhichOneof("response") == "request_headers"
    resp = ar.on_request_body(body_msg({"messages": []}))
    assert orjson.loads(resp.request_body.response.body_mutation.body)["model"] == "gpt-4o-prod"


def test_attempt_fixed_chat_model_leaves_embeddings_model_alone() -> None:
    """A provider's `model` is a chat model: an embeddings request keeps the client's."""
    ar = AttemptRequest(config=make_config(model="gpt-4o-fixed"))
    req = ep.ProcessingRequest(
        request_headers=http_headers({**CLIENT_HEADERS, ":path": "/v1/embeddings"}),
        attributes=attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
    )
    assert ar.on_request_headers(req).WhichOneof("response") == "request_headers"
    resp = ar.on_request_body(body_msg({"model": "text-embedding-3-small", "input": "x"}))
    assert resp.WhichOneof("response") == "request_body"
    assert not resp.request_body.response.HasField("body_mutation")
    chat = AttemptRequest(config=make_config(model="gpt-4o-fixed"))
    chat.on_request_headers(
        ep.ProcessingRequest(
            request_headers=http_headers(CLIENT_HEADERS),
            attributes=attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
        )
    )
    resp = chat.on_request_body(body_msg({"model": "gpt-4o", "messages": []}))
    assert orjson.loads(resp.request_body.response.body_mutation.body)["model"] == "gpt-4o-fixed"


@pytest.mark.parametrize("provider_id", ["default/other/openai", None], ids=["unknown", "no-metadata"])
def test_attempt_unknown_provider_503(provider_id: str | None) -> None:
    ar, resp = attempt_headers(make_config(), CLIENT_HEADERS, provider_id=provider_id)
    status, doc = immediate_json(resp)
    assert status == 503
    assert doc["error"]["code"] == "backend_not_configured"
    assert ar.provider is None
    # the body step of a request without provider does nothing
    assert not ar.on_request_body(body_msg({"model": "x"})).request_body.HasField("response")


def attempt_body(ar: AttemptRequest, body: bytes | dict) -> ep.ProcessingResponse:
    resp = ar.on_request_body(body_msg(body))
    assert resp.WhichOneof("response") == "request_body"
    return resp


def mutated_body(resp: ep.ProcessingResponse) -> bytes | None:
    common = resp.request_body.response
    if not common.HasField("body_mutation"):
        return None
    new = common.body_mutation.body
    assert header_sets(common.header_mutation)["content-length"] == str(len(new))
    return new


def test_attempt_body_model_override() -> None:
    ar, _ = attempt_headers(make_config(model="gpt-4o-mini"), CLIENT_HEADERS)
    original = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "x_unknown": {"keep": [1, 2]}}
    new = mutated_body(attempt_body(ar, original))
    assert new is not None
    assert orjson.loads(new) == {**original, "model": "gpt-4o-mini"}
    assert mutated_body(attempt_body(ar, new)) is None  # idempotent


def test_attempt_body_injects_include_usage_keeping_other_options() -> None:
    ar, _ = attempt_headers(make_config(), CLIENT_HEADERS)
    original = {"model": "gpt-4o", "stream": True, "stream_options": {"other": "kept"}, "messages": []}
    new = mutated_body(attempt_body(ar, original))
    assert new is not None
    assert orjson.loads(new) == {**original, "stream_options": {"other": "kept", "include_usage": True}}
    assert mutated_body(attempt_body(ar, new)) is None  # idempotent


@pytest.mark.parametrize("options", [None, {"include_usage": False}, "junk"], ids=repr)
def test_attempt_body_injects_include_usage(options: object) -> None:
    ar, _ = attempt_headers(make_config(model="m2"), CLIENT_HEADERS)
    body: dict = {"model": "m1", "stream": True}
    if options is not None:
        body["stream_options"] = options
    new = mutated_body(attempt_body(ar, body))
    assert new is not None
    assert orjson.loads(new) == {"model": "m2", "stream": True, "stream_options": {"include_usage": True}}
    assert mutated_body(attempt_body(ar, new)) is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": []}),
        ("/v1/chat/completions", {"model": "gpt-4o", "stream": False}),
        ("/v1/chat/completions", {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}),
        ("/v1/embeddings", {"model": "e", "input": "x", "stream": True}),
        ("/v1/unknown", {"model": "gpt-4o", "stream": True}),
    ],
)
def test_attempt_body_unchanged(path: str, body: dict) -> None:
    ar, _ = attempt_headers(make_config(), {**CLIENT_HEADERS, ":path": path})
    assert mutated_body(attempt_body(ar, body)) is None


def test_attempt_body_model_already_right_is_unchanged() -> None:
    ar, _ = attempt_headers(make_config(model="gpt-4o"), CLIENT_HEADERS)
    assert mutated_body(attempt_body(ar, {"model": "gpt-4o", "messages": []})) is None


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1]"], ids=["empty", "bad-json", "array"])
def test_attempt_body_garbage_is_left_alone(body: bytes) -> None:
    ar, _ = attempt_headers(make_config(model="other"), CLIENT_HEADERS)
    assert mutated_body(attempt_body(ar, body)) is None


@pytest.mark.parametrize("path", ["/v1/responses"])
def test_attempt_body_no_stream_options_outside_openai_chat(path: str) -> None:
    ar, _ = attempt_headers(make_config(), {**CLIENT_HEADERS, ":path": path})
    assert mutated_body(attempt_body(ar, {"model": "claude", "stream": True, "messages": []})) is None


@pytest.mark.parametrize(
    ("provider_kw", "expected"),
    [
        ({"path_prefix": ""}, "/v1/messages/count_tokens"),
        ({"path_prefix": "/proxy"}, "/proxy/v1/messages/count_tokens"),
        ({"path": "/custom/v1/messages?beta=true"}, "/custom/v1/messages/count_tokens?beta=true"),
    ],
)
def test_attempt_anthropic_count_tokens_path(provider_kw: dict, expected: str) -> None:
    config = make_config(
        kind="anthropic", auth=AuthConfig(header="x-api-key", prefix="", value="sk-ant"), **provider_kw
    )
    _, resp = attempt_headers(
        config,
        {**CLIENT_HEADERS, ":path": "/v1/messages/count_tokens"},
        body=b'{"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}',
    )
    sets = header_sets(resp.request_headers.response.header_mutation)
    assert sets.get(":path", "/v1/messages/count_tokens") == expected  # unchanged: not set
    assert sets["x-api-key"] == "sk-ant"


def test_attempt_count_tokens_on_an_openai_provider_is_refused_in_anthropic_schema() -> None:
    _, resp = attempt_headers(make_config(), {**CLIENT_HEADERS, ":path": "/v1/messages/count_tokens"})
    status, doc = immediate_json(resp)
    assert status == 400 and doc["type"] == "error"
    assert "sk-provider" not in str(resp)
