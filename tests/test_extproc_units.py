"""Unit tests of the extproc building blocks, driven with real ext_proc protos (no Envoy, no sockets)."""

from __future__ import annotations

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2, text_format

from extproc.attempt_stage import AttemptRequest
from extproc.configclient import ConfigHolder
from extproc.contract import AuthConfig, ExtprocConfig, ProviderConfig
from extproc.operations import operation_of
from extproc.router_stage import RouterRequest
from extproc.sse import SSEDecoder
from extproc.usage import Usage, from_openai
from extproc.wire import MODEL_HEADER

GATEWAY = "default/llmgw"
PROVIDER_ID = "default/b/openai"


# --- helpers -------------------------------------------------------------------------------------


def http_headers(headers: dict[str, str], *, end_of_stream: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
        ),
        end_of_stream=end_of_stream,
    )


def body_msg(body: bytes | dict, *, end_of_stream: bool = True) -> ep.HttpBody:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ep.HttpBody(body=raw, end_of_stream=end_of_stream)


def host_metadata_text(provider_id: str) -> str:
    """`xds.upstream_host_metadata` as Envoy sends it: the Metadata message in text format."""
    meta = base_pb2.Metadata()
    meta.filter_metadata["envoy.transport_socket_match"].update({"provider": provider_id})
    meta.filter_metadata["llmgw"].update({"provider": provider_id})
    return text_format.MessageToString(meta, as_one_line=True)


def attributes(values: dict[str, str]) -> dict[str, struct_pb2.Struct]:
    struct = struct_pb2.Struct()
    struct.update(values)
    return {"envoy.filters.http.ext_proc": struct}


def header_sets(mutation: ep.HeaderMutation) -> dict[str, str]:
    return {
        o.header.key: (o.header.raw_value.decode() if o.header.raw_value else o.header.value)
        for o in mutation.set_headers
    }


def make_config(**provider_kw: object) -> ExtprocConfig:
    kw: dict[str, object] = {
        "id": PROVIDER_ID,
        "backend": "default/b",
        "kind": "openai",
        "host": "api.openai.com",
        "auth": AuthConfig(header="authorization", prefix="Bearer ", value="sk-provider", source="test"),
    }
    kw.update(provider_kw)
    provider = ProviderConfig(**kw)  # type: ignore[arg-type]
    return ExtprocConfig(
        version="v1",
        providers={PROVIDER_ID: provider},
        models={GATEWAY: ["gpt-4o", "gpt-4o-mini"], "other/gw": ["secret-model"]},
    )


def immediate_json(resp: ep.ProcessingResponse) -> tuple[int, dict]:
    assert resp.WhichOneof("response") == "immediate_response", resp
    ir = resp.immediate_response
    assert header_sets(ir.headers)["content-type"] == "application/json"
    return ir.status.code, orjson.loads(ir.body)


def llmgw_meta(resp: ep.ProcessingResponse) -> dict:
    struct = resp.dynamic_metadata
    assert "llmgw" in struct.fields, resp
    return {k: _plain(v) for k, v in struct.fields["llmgw"].struct_value.fields.items()}


def _plain(v: struct_pb2.Value) -> object:
    kind = v.WhichOneof("kind")
    return getattr(v, kind)


# --- SSE decoder ---------------------------------------------------------------------------------

STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b"event: custom\ndata: line one\ndata: line two\n\n"
    b": a comment\n\n"
    b"data: [DONE]\n\n"
)


def _events(dec: SSEDecoder, *chunks: bytes) -> list[tuple[bytes, bytes, str]]:
    out = []
    for chunk in chunks:
        out.extend((e.raw, e.data, e.event) for e in dec.feed(chunk))
    return out


def test_sse_whole_stream() -> None:
    events = _events(SSEDecoder(), STREAM)
    assert [e[1] for e in events] == [
        b'{"id":"1","choices":[{"delta":{"content":"Hel"}}]}',
        b"line one\nline two",
        b"",
        b"[DONE]",
    ]
    assert events[1][2] == "custom"
    assert b"".join(e[0] for e in events) == STREAM


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_sse_split_at_every_byte(crlf: bool) -> None:
    stream = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    expected = _events(SSEDecoder(), STREAM)
    for i in range(len(stream) + 1):
        dec = SSEDecoder()
        got = _events(dec, stream[:i], stream[i:])
        assert [(d, ev) for _, d, ev in got] == [(d, ev) for _, d, ev in expected], f"split at {i}"
        assert dec.flush() == b""


def test_sse_split_into_single_bytes() -> None:
    dec = SSEDecoder()
    got = _events(dec, *(STREAM[i : i + 1] for i in range(len(STREAM))))
    assert got == _events(SSEDecoder(), STREAM)


def test_sse_crlf() -> None:
    events = SSEDecoder().feed(b"event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("e", b"a\nb"), ("", b"c")]


def test_sse_multiline_data_and_no_space_after_colon() -> None:
    events = SSEDecoder().feed(b"data:first\ndata: second\n\n")
    assert events[0].data == b"first\nsecond"


def test_sse_flush_returns_partial_tail_once() -> None:
    dec = SSEDecoder()
    events = dec.feed(b"data: one\n\ndata: tw")
    assert [e.data for e in events] == [b"one"]
    assert dec.flush() == b"data: tw"
    assert dec.flush() == b""
    assert [e.data for e in dec.feed(b"data: three\n\n")] == [b"three"]


def test_sse_only_one_leading_space_is_removed() -> None:
    events = SSEDecoder().feed(b"data:   indented\n\n")
    assert events[0].data == b"  indented"


# --- usage ---------------------------------------------------------------------------------------


def test_usage_chat_with_cached_tokens() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
        }
    )
    assert usage == Usage(input=120, output=30, cache_read=100, cache_write=None)


def test_usage_embeddings_has_no_output() -> None:
    assert from_openai({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8, output=None)


@pytest.mark.parametrize(
    "garbage", [None, "12", 12, [1, 2], {"prompt_tokens": "12", "completion_tokens": True}], ids=repr
)
def test_usage_garbage(garbage: object) -> None:
    usage = from_openai(garbage)
    assert usage is None or usage == Usage()


def test_usage_garbage_details_ignored() -> None:
    assert from_openai({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": None}) == Usage(
        input=3, output=1
    )


def test_usage_merged_later_wins_field_by_field() -> None:
    first = Usage(input=10, cache_read=4)
    later = Usage(output=7, cache_read=5)
    assert first.merged(later) == Usage(input=10, output=7, cache_read=5, cache_write=None)
    assert first.merged(Usage()) == first


# --- operations ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "body",
    [{"messages": []}, {"model": "", "messages": []}, {"model": 5, "messages": []}, {"model": None}],
    ids=["absent", "empty", "number", "null"],
)
def test_router_missing_model(body: dict) -> None:
    rr, _ = router()
    status, doc = immediate_json(rr.on_request_body(body_msg(body)))
    assert status == 400
    assert doc["error"]["code"] == "missing_model"


def test_router_missing_model_anthropic() -> None:
    rr, _ = router("/v1/messages")
    status, doc = immediate_json(rr.on_request_body(body_msg({"messages": []})))
    assert status == 400
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b"[]", b'[{"model": "gpt-4o"}]', b'"gpt-4o"', b"42", b"null"])
def test_router_non_object_body(body: bytes) -> None:
    rr, _ = router()
    status, doc = immediate_json(rr.on_request_body(body_msg(body)))
    assert status == 400
    assert doc["error"]["code"] == "invalid_body"


def test_router_unknown_operation_bad_json_passes() -> None:
    rr, _ = router("/v1/something/else")
    resp = rr.on_request_body(body_msg(b"not json"))
    assert resp.WhichOneof("response") == "request_body"
    assert not resp.request_body.HasField("response")


def test_router_unknown_operation_array_body_passes() -> None:
    rr, _ = router("/v1/something/else")
    resp = rr.on_request_body(body_msg(b"[1, 2]"))
    assert resp.WhichOneof("response") == "request_body"


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


def test_router_model_header_removed_when_no_model_on_modelless_operation() -> None:
    rr, _ = router("/v1/unknown")
    resp = rr.on_request_body(body_msg({"input": "x"}))
    common = resp.request_body.response
    assert MODEL_HEADER in common.header_mutation.remove_headers
    assert MODEL_HEADER not in header_sets(common.header_mutation)
    assert common.clear_route_cache is True


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


# --- attempt stage -------------------------------------------------------------------------------


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


CLIENT_HEADERS = {
    ":method": "POST",
    ":path": "/v1/chat/completions",
    ":authority": "gw",
    "authorization": "Bearer client-key",
    "api-key": "client",
    "x-api-key": "client",
    "x-goog-api-key": "client",
    MODEL_HEADER: "gpt-4o",
}


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


def test_attempt_headers_unknown_operation_keeps_path() -> None:
    _, resp = attempt_headers(make_config(path_prefix="/x"), {**CLIENT_HEADERS, ":path": "/v1/files?purpose=y"})
    assert ":path" not in header_sets(resp.request_headers.response.header_mutation)


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


# --- config holder -------------------------------------------------------------------------------


def test_config_holder_accepts_and_round_trips() -> None:
    holder = ConfigHolder()
    config = make_config(model="m", path="/p")
    assert holder.accept(config.to_json()) is True
    assert holder.current == config
    assert holder.ready.is_set()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"{}",
        b'{"contract": 99, "version": "v2"}',
        b'{"contract": 1}',
        b'{"contract": 1, "version": "v2", "providers": {"p": {"id": "p", "bogus": 1}}}',
    ],
    ids=["not-json", "empty", "contract", "no-version", "bad-provider"],
)
def test_config_holder_keeps_last_good(garbage: bytes) -> None:
    holder = ConfigHolder()
    good = make_config()
    assert holder.accept(good.to_json())
    assert holder.accept(garbage) is False
    assert holder.current == good


@pytest.mark.parametrize(
    "garbage", [b"[]", b"null", b'"x"', b'{"contract": 1, "version": "v2", "providers": []}'], ids=repr
)
def test_config_holder_keeps_last_good_on_wrong_json_shapes(garbage: bytes) -> None:
    holder = ConfigHolder()
    good = make_config()
    assert holder.accept(good.to_json())
    assert holder.accept(garbage) is False
    assert holder.current == good
