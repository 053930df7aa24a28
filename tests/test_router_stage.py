"""The router stage (`extproc.router_stage`) driven with real ext_proc protos: request checks and model
routing, then the response (usage in dynamic metadata, the SSE usage chunk hidden or passed)."""

from __future__ import annotations

import orjson
import pytest
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import metrics
from extproc.configclient import ConfigHolder
from extproc.contract import ExtprocConfig
from extproc.router_stage import RouterRequest
from extproc.wire import ANSWERED_HEADER, MODEL_HEADER
from tests.extproc_protos import (
    GATEWAY,
    PROVIDER_ID,
    attributes,
    body_msg,
    header_sets,
    host_metadata_text,
    http_headers,
    immediate_json,
    llmgw_meta,
    make_config,
)

# --- router stage: request -----------------------------------------------------------------------


def router(path: str = "/v1/chat/completions", method: str = "POST") -> tuple[RouterRequest, ep.ProcessingResponse]:
    rr = RouterRequest(gateway=GATEWAY, config=make_config())
    resp = rr.on_request_headers(
        http_headers({":method": method, ":path": path, ":authority": "gw", "content-type": "application/json"})
    )
    return rr, resp


def test_router_headers_continue() -> None:
    _, resp = router()
    assert resp.WhichOneof("response") == "request_headers"


def test_router_bad_json_openai_error() -> None:
    rr, _ = router()
    status, doc = immediate_json(rr.on_request_body(body_msg(b'{"model": "gpt-4o",')))
    assert status == 400
    assert set(doc["error"]) == {"message", "type", "code", "param"}
    assert doc["error"]["type"] == "invalid_request_error"
    assert doc["error"]["code"] == "invalid_json"
    assert "not valid JSON" in doc["error"]["message"]


def test_router_bad_json_anthropic_error_on_messages() -> None:
    rr, _ = router("/v1/messages")
    status, doc = immediate_json(rr.on_request_body(body_msg(b"nope")))
    assert status == 400
    assert doc["type"] == "error"
    assert doc["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in doc["error"]["message"]


@pytest.mark.parametrize("body", [{"model": 5, "messages": []}, {"model": ["a"]}], ids=["number", "list"])
def test_router_missing_model(body: dict) -> None:
    rr, _ = router()
    status, doc = immediate_json(rr.on_request_body(body_msg(body)))
    assert status == 400
    assert doc["error"]["code"] == "missing_model"


@pytest.mark.parametrize(
    "body", [{"messages": []}, {"model": "", "messages": []}, {"model": None}], ids=["absent", "empty", "null"]
)
def test_router_absent_model_goes_on_without_the_header(body: dict) -> None:
    """The router stage cannot know yet whether the backend fixes the model: the attempt stage decides."""
    rr, _ = router()
    resp = rr.on_request_body(body_msg(body))
    common = resp.request_body.response
    assert MODEL_HEADER in common.header_mutation.remove_headers
    assert common.clear_route_cache is True
    assert rr.request_model == ""


def _direct_router(path: str = "/v1/chat/completions", method: str = "POST", **provider_kw: object) -> RouterRequest:
    base = make_config(**provider_kw)
    config = ExtprocConfig(
        version="v1", providers=base.providers, models=base.models, direct_routes={"r/direct": PROVIDER_ID}
    )
    rr = RouterRequest(gateway=GATEWAY, config=config)
    rr.on_request_headers(http_headers({":method": method, ":path": path, ":authority": "gw"}), route_name="r/direct")
    return rr


def test_router_direct_route_without_fixed_model_needs_one() -> None:
    status, doc = immediate_json(_direct_router().on_request_body(body_msg({"messages": []})))
    assert status == 400 and doc["error"]["code"] == "missing_model"


@pytest.mark.parametrize("body", [{"messages": []}, {"model": "", "messages": []}], ids=["absent", "empty"])
def test_router_direct_route_with_fixed_model_fills_it_in(body: dict) -> None:
    rr = _direct_router(model="gpt-4o-fixed")
    resp = rr.on_request_body(body_msg(body))
    assert resp.WhichOneof("response") == "request_body"
    assert orjson.loads(resp.request_body.response.body_mutation.body)["model"] == "gpt-4o-fixed"
    assert rr.request_model == "gpt-4o-fixed"  # the access log and metrics carry the backend's model


def test_router_direct_route_fixed_chat_model_leaves_embeddings_model_alone() -> None:
    rr = _direct_router("/v1/embeddings", model="gpt-4o-fixed")
    resp = rr.on_request_body(body_msg({"model": "text-embedding-3-small", "input": "x"}))
    assert resp.WhichOneof("response") == "request_body"
    assert not resp.request_body.response.HasField("body_mutation")
    status, doc = immediate_json(
        _direct_router("/v1/embeddings", model="gpt-4o-fixed").on_request_body(body_msg({"input": "x"}))
    )
    assert status == 400 and doc["error"]["code"] == "missing_model"


def test_router_direct_route_azure_deployment_needs_no_model() -> None:
    rr = _direct_router(kind="azureopenai", settings={"deploymentName": "gpt-4o-prod", "apiVersion": "2024-10-21"})
    resp = rr.on_request_body(body_msg({"messages": [{"role": "user", "content": "hi"}]}))
    assert resp.WhichOneof("response") == "request_body"
    assert rr.request_model == "gpt-4o-prod"


def test_router_missing_model_anthropic() -> None:
    rr, _ = router("/v1/messages")
    status, doc = immediate_json(rr.on_request_body(body_msg({"model": 7, "messages": []})))
    assert status == 400
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"


# --- the operation allowlist ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/files", "/v1/fine_tuning/jobs", "/v1/batches", "/anything", "/", "/v1/chat/completions/x"]
)
def test_router_unknown_path_is_404_and_contacts_nobody(path: str) -> None:
    rr, resp = router(path)
    status, doc = immediate_json(resp)
    assert status == 404
    assert doc["error"]["code"] == "unknown_operation" and doc["error"]["type"] == "not_found_error"
    assert rr.done


@pytest.mark.parametrize(
    ("path", "method"),
    [("/v1/chat/completions", "GET"), ("/v1/embeddings", "PUT"), ("/v1/models", "POST"), ("/v1/responses", "DELETE")],
)
def test_router_known_path_wrong_method_is_405(path: str, method: str) -> None:
    _, resp = router(path, method)
    status, doc = immediate_json(resp)
    assert status == 405
    assert doc["error"]["code"] == "method_not_allowed"


def test_router_allowlist_answers_in_anthropic_schema_on_messages() -> None:
    for path, method, status in (("/v1/messages", "GET", 405), ("/v1/messages/batches", "POST", 404)):
        _, resp = router(path, method)
        got, doc = immediate_json(resp)
        assert got == status
        assert doc["type"] == "error", doc


def test_router_direct_route_refuses_what_its_provider_does_not_serve() -> None:
    rr = RouterRequest(
        gateway=GATEWAY,
        config=ExtprocConfig(
            version="v1",
            providers=make_config(kind="anthropic").providers,
            direct_routes={"r/direct": PROVIDER_ID},
        ),
    )
    resp = rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/embeddings"}), route_name="r/direct")
    status, doc = immediate_json(resp)
    assert status == 400 and doc["error"]["code"] == "unsupported_operation"


@pytest.mark.parametrize("body", [b"[]", b'[{"model": "gpt-4o"}]', b'"gpt-4o"', b"42", b"null"])
def test_router_non_object_body(body: bytes) -> None:
    rr, _ = router()
    status, doc = immediate_json(rr.on_request_body(body_msg(body)))
    assert status == 400
    assert doc["error"]["code"] == "invalid_body"


def test_router_post_without_body() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=make_config())
    resp = rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}, end_of_stream=True))
    status, doc = immediate_json(resp)
    assert status == 400
    assert doc["error"]["code"] == "missing_body"
    assert rr.done


def test_router_valid_body_sets_model_header_and_clears_route_cache() -> None:
    rr, _ = router()
    resp = rr.on_request_body(body_msg({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
    assert resp.WhichOneof("response") == "request_body"
    common = resp.request_body.response
    assert common.clear_route_cache is True
    assert header_sets(common.header_mutation)[MODEL_HEADER] == "gpt-4o"
    assert not common.HasField("body_mutation")
    assert rr.request_model == "gpt-4o"
    assert rr.stream is False


@pytest.mark.parametrize(
    ("body", "wants_usage"),
    [
        ({"model": "m", "stream": True}, False),
        ({"model": "m", "stream": True, "stream_options": {"include_usage": False}}, False),
        ({"model": "m", "stream": True, "stream_options": {"include_usage": True}}, True),
    ],
)
def test_router_remembers_stream_and_usage_wish(body: dict, wants_usage: bool) -> None:
    rr, _ = router()
    rr.on_request_body(body_msg(body))
    assert rr.stream is True
    assert rr.client_wants_usage is wants_usage


def test_router_models_listing() -> None:
    _, resp = router("/v1/models", method="GET")
    status, doc = immediate_json(resp)
    assert status == 200
    assert doc["object"] == "list"
    assert [m["id"] for m in doc["data"]] == ["gpt-4o", "gpt-4o-mini"]
    assert all(m["object"] == "model" for m in doc["data"])


def test_router_models_listing_unknown_gateway_is_empty() -> None:
    rr = RouterRequest(gateway="nobody/here", config=make_config())
    status, doc = immediate_json(rr.on_request_headers(http_headers({":method": "GET", ":path": "/openai/v1/models"})))
    assert status == 200
    assert doc["data"] == []


# --- router stage: response ----------------------------------------------------------------------


def response_headers(
    rr: RouterRequest, headers: dict[str, str], *, end_of_stream: bool = False
) -> ep.ProcessingResponse:
    req = ep.ProcessingRequest(
        response_headers=http_headers(headers, end_of_stream=end_of_stream),
        attributes=attributes(
            {
                "xds.route_name": "httproute/default/openai/rule/0",
                "xds.cluster_name": "aibackend/default/b",
                "xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID),
            }
        ),
    )
    return rr.on_response_headers(req)


def test_router_json_response_usage_in_dynamic_metadata() -> None:
    rr, _ = router()
    rr.on_request_body(body_msg({"model": "gpt-4o", "messages": []}))
    resp = response_headers(rr, {":status": "200", "content-type": "application/json"})
    assert not resp.HasField("mode_override")
    assert not resp.HasField("dynamic_metadata")
    body = {
        "id": "x",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 3,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    resp = rr.on_response_body(body_msg(body))
    assert resp.WhichOneof("response") == "response_body"
    assert not resp.response_body.response.HasField("body_mutation")
    meta = llmgw_meta(resp)
    assert meta["gen_ai.usage.input_tokens"] == 11
    assert meta["gen_ai.usage.output_tokens"] == 3
    assert meta["gen_ai.usage.cache_read_input_tokens"] == 2
    assert meta["gen_ai.request.model"] == "gpt-4o"
    assert meta["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert meta["gen_ai.operation.name"] == "chat"
    assert meta["gen_ai.provider.name"] == "openai"
    assert meta["gateway"] == GATEWAY
    assert rr.route == "default/openai"
    assert rr.backend == "default/b"
    assert rr.done


def test_router_embeddings_response_has_no_output_tokens() -> None:
    rr, _ = router("/v1/embeddings")
    rr.on_request_body(body_msg({"model": "text-embedding-3-small", "input": "x"}))
    response_headers(rr, {":status": "200", "content-type": "application/json"})
    resp = rr.on_response_body(body_msg({"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}}))
    meta = llmgw_meta(resp)
    assert meta["gen_ai.usage.input_tokens"] == 4
    assert "gen_ai.usage.output_tokens" not in meta
    assert meta["gen_ai.operation.name"] == "embeddings"


def test_router_headers_only_response_finishes() -> None:
    rr, _ = router()
    rr.on_request_body(body_msg({"model": "gpt-4o"}))
    resp = response_headers(rr, {":status": "204"}, end_of_stream=True)
    meta = llmgw_meta(resp)
    assert "gen_ai.usage.input_tokens" not in meta
    assert rr.done


def test_router_error_response_has_no_usage() -> None:
    rr, _ = router()
    rr.on_request_body(body_msg({"model": "gpt-4o"}))
    response_headers(rr, {":status": "429", "content-type": "application/json"})
    resp = rr.on_response_body(body_msg({"error": {"message": "slow down"}, "usage": {"prompt_tokens": 1}}))
    assert "gen_ai.usage.input_tokens" not in llmgw_meta(resp)


def test_router_answer_of_an_unknown_provider_is_an_error_not_a_passthrough() -> None:
    """A worker without the answering provider's config (just restarted) cannot translate.

    It used to take the answer for the client's own schema: a 200 with, e.g., raw
    Anthropic JSON for an OpenAI client.
    """
    rr = RouterRequest(gateway=GATEWAY, config=ExtprocConfig(version=""))
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    rr.on_request_body(body_msg({"model": "gpt-4o", "messages": []}))
    status, doc = immediate_json(response_headers(rr, {":status": "200", "content-type": "application/json"}))
    assert status == 503
    assert doc["error"]["code"] == "provider_not_configured"
    assert rr.done


def test_router_answer_of_an_unknown_provider_anthropic_client() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=ExtprocConfig(version=""))
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/messages"}))
    rr.on_request_body(body_msg({"model": "claude", "messages": [], "stream": True}))
    status, doc = immediate_json(response_headers(rr, {":status": "200", "content-type": "text/event-stream"}))
    assert status == 503
    assert doc["type"] == "error" and doc["error"]["type"] == "api_error"


def test_router_unknown_provider_found_in_the_newer_config() -> None:
    """The request started before the worker had (this version of) its config: look again."""
    holder = ConfigHolder()
    rr = RouterRequest(gateway=GATEWAY, config=holder.current, latest_config=lambda: holder.current)
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    rr.on_request_body(body_msg({"model": "gpt-4o", "messages": []}))
    holder.current = make_config()
    resp = response_headers(rr, {":status": "200", "content-type": "application/json"})
    assert resp.WhichOneof("response") == "response_headers"
    assert rr.provider == "openai"


def test_router_sse_headers_switch_to_streamed() -> None:
    rr, _ = router()
    rr.on_request_body(body_msg({"model": "gpt-4o", "stream": True}))
    resp = response_headers(rr, {":status": "200", "content-type": "text/event-stream; charset=utf-8"})
    assert resp.WhichOneof("response") == "response_headers"
    assert resp.mode_override.response_body_mode == pm.ProcessingMode.STREAMED
    assert rr.translation is not None and rr.translation.streaming


def _chunk(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


CONTENT_1 = _chunk(
    {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-x", "choices": [{"delta": {"content": "Hi"}}]}
)
CONTENT_2 = _chunk(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-x",
        "choices": [{"delta": {}, "finish_reason": "stop"}],
        "usage": None,
    }
)
USAGE_CHUNK = _chunk(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-x",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
)
DONE = b"data: [DONE]\n\n"
UPSTREAM_SSE = CONTENT_1 + CONTENT_2 + USAGE_CHUNK + DONE


def streaming_router(stream_options: dict | None) -> RouterRequest:
    rr, _ = router()
    body: dict = {"model": "gpt-4o", "stream": True, "messages": []}
    if stream_options is not None:
        body["stream_options"] = stream_options
    rr.on_request_body(body_msg(body))
    response_headers(rr, {":status": "200", "content-type": "text/event-stream"})
    return rr


def feed(rr: RouterRequest, chunks: list[bytes]) -> tuple[bytes, list[ep.ProcessingResponse]]:
    """What the client receives: each chunk as mutated (or unchanged when no mutation)."""
    out = b""
    responses = []
    for i, chunk in enumerate(chunks):
        resp = rr.on_response_body(ep.HttpBody(body=chunk, end_of_stream=i == len(chunks) - 1))
        assert resp.WhichOneof("response") == "response_body"
        common = resp.response_body.response
        out += common.body_mutation.body if common.HasField("body_mutation") else chunk
        responses.append(resp)
    return out, responses


def test_router_sse_usage_chunk_hidden_when_client_did_not_ask() -> None:
    rr = streaming_router(None)
    out, responses = feed(rr, [CONTENT_1, CONTENT_2 + USAGE_CHUNK, DONE])
    assert out == CONTENT_1 + CONTENT_2 + DONE
    assert responses[1].response_body.response.HasField("body_mutation")
    meta = llmgw_meta(responses[-1])
    assert meta["gen_ai.usage.input_tokens"] == 9
    assert meta["gen_ai.usage.output_tokens"] == 2
    assert meta["gen_ai.response.model"] == "gpt-4o-x"
    assert "gen_ai.server.time_to_first_token_ms" in meta


def test_router_sse_usage_chunk_hidden_when_include_usage_false() -> None:
    rr = streaming_router({"include_usage": False})
    out, _ = feed(rr, [UPSTREAM_SSE])
    assert out == CONTENT_1 + CONTENT_2 + DONE


def test_router_sse_usage_chunk_split_across_bodies_at_every_position() -> None:
    start = len(CONTENT_1 + CONTENT_2)
    end = start + len(USAGE_CHUNK)
    for cut in range(start - 3, end + 3):
        rr = streaming_router(None)
        out, responses = feed(rr, [UPSTREAM_SSE[:cut], UPSTREAM_SSE[cut:]])
        assert out == CONTENT_1 + CONTENT_2 + DONE, f"cut at {cut}"
        assert llmgw_meta(responses[-1])["gen_ai.usage.input_tokens"] == 9


def test_router_sse_usage_chunk_split_over_three_bodies_with_empty_end() -> None:
    rr = streaming_router(None)
    mid = len(CONTENT_1 + CONTENT_2) + 20
    out, responses = feed(rr, [UPSTREAM_SSE[:mid], UPSTREAM_SSE[mid : mid + 10], UPSTREAM_SSE[mid + 10 :], b""])
    assert out == CONTENT_1 + CONTENT_2 + DONE
    assert llmgw_meta(responses[-1])["gen_ai.usage.output_tokens"] == 2


def test_router_sse_cut_mid_event_flushes_tail_at_end_of_stream() -> None:
    """A stream that ends early (here mid-event) is told to be incomplete, not silently cut."""
    rr = streaming_router(None)
    out, _ = feed(rr, [CONTENT_1, CONTENT_2[:15]])
    error = (
        b'data: {"error":{"message":"The provider\'s stream ended before it was complete.",'
        b'"type":"server_error","code":"stream_incomplete","param":null}}\n\n'
    )
    assert out == CONTENT_1 + CONTENT_2[:15] + b"\n\n" + error


def test_router_sse_ending_without_done_gets_an_error_event_whoever_asked_for_usage() -> None:
    rr = streaming_router({"include_usage": True})
    out, _ = feed(rr, [CONTENT_1, CONTENT_2])
    assert out.startswith(CONTENT_1 + CONTENT_2 + b'data: {"error":') and b"stream_incomplete" in out
    rr = streaming_router({"include_usage": True})
    out, _ = feed(rr, [CONTENT_1, CONTENT_2, DONE])
    assert out == CONTENT_1 + CONTENT_2 + DONE


def test_router_sse_passes_unchanged_when_client_asked_for_usage() -> None:
    rr = streaming_router({"include_usage": True})
    chunks = [CONTENT_1, CONTENT_2 + USAGE_CHUNK[:30], USAGE_CHUNK[30:], DONE]
    out, responses = feed(rr, chunks)
    assert out == UPSTREAM_SSE
    for resp in responses:
        assert not resp.response_body.response.HasField("body_mutation")
    meta = llmgw_meta(responses[-1])
    assert meta["gen_ai.usage.input_tokens"] == 9
    assert meta["gen_ai.usage.output_tokens"] == 2


def test_router_stream_cut_after_it_started_keeps_its_metadata_and_counts_its_usage() -> None:
    """Envoy resets the client's stream and closes ours: what was known is already in Envoy."""
    from prometheus_client import REGISTRY

    rr, _ = router()
    rr.on_request_body(body_msg({"model": "gpt-4o", "stream": True, "messages": []}))
    headers = response_headers(rr, {":status": "200", "content-type": "text/event-stream"})
    assert llmgw_meta(headers)["provider"] == PROVIDER_ID  # identity before any byte of the body
    first = rr.on_response_body(ep.HttpBody(body=CONTENT_1, end_of_stream=False))
    assert "gen_ai.server.time_to_first_token_ms" in llmgw_meta(first)
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o",
        "gen_ai_response_model": "gpt-4o-x",  # from the chunk that did arrive
        "gateway": GATEWAY,
        "route": "default/openai",
        "backend": "default/b",
        **{f"caller_{f}": "" for f in metrics.CALLER_FIELDS},  # no caller labels allowlisted
    }
    name = "llmgw_gen_ai_server_interrupted_streams_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    rr.on_stream_closed()
    assert REGISTRY.get_sample_value(name, labels) == before + 1
    rr.on_stream_closed()  # once
    assert REGISTRY.get_sample_value(name, labels) == before + 1
    done, _ = router()
    done.on_stream_closed()  # no response yet: nothing was cut
    assert REGISTRY.get_sample_value(name, labels) == before + 1


def test_router_passes_the_attempt_stages_own_error_untranslated() -> None:
    """An error the attempt stage answered is in the client's schema already: code and param survive."""
    rr = RouterRequest(gateway=GATEWAY, config=make_config(kind="gemini"))
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    rr.on_request_body(body_msg({"messages": []}))
    resp = response_headers(
        rr, {":status": "400", "content-type": "application/json", ANSWERED_HEADER: "1"}, end_of_stream=False
    )
    assert ANSWERED_HEADER in resp.response_headers.response.header_mutation.remove_headers
    body = b'{"error": {"message": "m", "type": "invalid_request_error", "code": "missing_model", "param": null}}'
    out = rr.on_response_body(ep.HttpBody(body=body, end_of_stream=True))
    mutated = out.response_body.response.body_mutation.body
    assert orjson.loads(mutated or body)["error"]["code"] == "missing_model"


def test_router_access_log_carries_the_backends_model_when_the_client_named_none() -> None:
    rr = RouterRequest(gateway=GATEWAY, config=make_config(model="gpt-4o-fixed"))
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    rr.on_request_body(body_msg({"messages": []}))
    resp = response_headers(rr, {":status": "200", "content-type": "application/json"}, end_of_stream=True)
    assert rr.request_model == "gpt-4o-fixed"
    assert llmgw_meta(resp)["gen_ai.request.model"] == "gpt-4o-fixed"
