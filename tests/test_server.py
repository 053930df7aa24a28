"""`extproc.server.ExternalProcessor.Process` driven directly: fake request streams and a fake servicer context.

One stream is one HTTP request through one stage; the stage and the Gateway come
from the stream's invocation metadata. No gRPC server, no Envoy: each test feeds
real ext_proc protos and reads back the responses in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.attempt_stage import AttemptRequest
from extproc.configclient import ConfigHolder
from extproc.router_stage import RouterRequest
from extproc.server import ExternalProcessor
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
    llmgw_meta,
    make_config,
)

ROUTER = (("x-llmgw-stage", "router"), ("x-llmgw-gateway", GATEWAY))
ATTEMPT = (("x-llmgw-stage", "attempt"), ("x-llmgw-gateway", GATEWAY))
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class FakeContext:
    """What `Process` reads from a `grpc.aio.ServicerContext`: the invocation metadata."""

    def __init__(self, metadata: Sequence[tuple[str, str]] | None) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> Sequence[tuple[str, str]] | None:
        return self.metadata


def processor(**provider_kw: object) -> ExternalProcessor:
    holder = ConfigHolder()
    assert holder.accept(make_config(**provider_kw).to_json())
    return ExternalProcessor(holder)


def run(
    proc: ExternalProcessor, metadata: Sequence[tuple[str, str]] | None, messages: Sequence[ep.ProcessingRequest]
) -> list[ep.ProcessingResponse]:
    """Send `messages` on one stream; the responses, in order."""

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        for message in messages:
            yield message

    async def main() -> list[ep.ProcessingResponse]:
        stream = proc.Process(requests(), FakeContext(metadata))  # type: ignore[arg-type]
        return [resp async for resp in stream]

    return asyncio.run(main())


def request_headers(headers: dict[str, str], **attrs: str) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_headers=http_headers(headers), attributes=attributes(attrs) if attrs else {})


def request_body(body: bytes | dict[str, Any]) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(request_body=body_msg(body))


def response_headers(headers: dict[str, str], *, end_of_stream: bool = False) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(
        response_headers=http_headers(headers, end_of_stream=end_of_stream),
        attributes=attributes(
            {
                "xds.route_name": "httproute/default/openai/rule/0",
                "xds.cluster_name": "aibackend/default/b",
                "xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID),
            }
        ),
    )


def response_body(body: bytes | dict[str, Any]) -> ep.ProcessingRequest:
    return ep.ProcessingRequest(response_body=body_msg(body))


POST_CHAT = {":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw", "content-type": "application/json"}
TRAILERS = ep.ProcessingRequest(request_trailers=ep.HttpTrailers())


def kinds(responses: list[ep.ProcessingResponse]) -> list[str | None]:
    return [r.WhichOneof("response") for r in responses]


# --- router stage ----------------------------------------------------------------------------


def test_router_stage_answers_each_message_of_a_request_in_order() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    responses = run(
        processor(),
        ROUTER,
        [
            request_headers(POST_CHAT),
            request_body(CHAT),
            response_headers({":status": "200", "content-type": "application/json"}),
            response_body({"id": "x", "model": "gpt-4o-1", "choices": [], "usage": usage}),
        ],
    )
    assert kinds(responses) == ["request_headers", "request_body", "response_headers", "response_body"]
    assert header_sets(responses[1].request_body.response.header_mutation)[MODEL_HEADER] == "gpt-4o"
    meta = llmgw_meta(responses[3])
    assert meta["gateway"] == GATEWAY  # from the invocation metadata
    assert (meta["gen_ai.usage.input_tokens"], meta["gen_ai.usage.output_tokens"]) == (5, 2)


@pytest.mark.parametrize(
    ("metadata", "models"),
    [(ROUTER, ["gpt-4o", "gpt-4o-mini"]), ((("x-llmgw-gateway", "other/gw"),), ["secret-model"]), (None, [])],
    ids=["router", "stage-absent", "no-metadata"],
)
def test_router_is_the_default_stage_and_the_gateway_scopes_models(
    metadata: Sequence[tuple[str, str]] | None, models: list[str]
) -> None:
    [resp] = run(processor(), metadata, [request_headers({":method": "GET", ":path": "/v1/models"})])
    status, doc = immediate_json(resp)
    assert status == 200 and [m["id"] for m in doc["data"]] == models


def test_router_stage_passes_trailers_through() -> None:
    responses = run(processor(), ROUTER, [TRAILERS, ep.ProcessingRequest(response_trailers=ep.HttpTrailers())])
    assert kinds(responses) == ["request_trailers", "response_trailers"]
    assert responses[0] == ep.ProcessingResponse(request_trailers=ep.TrailersResponse())


def test_a_stream_keeps_the_config_it_started_with() -> None:
    proc = processor(model="first-model")
    later = make_config(model="second-model")

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        yield request_headers({**CLIENT_HEADERS}, **{"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)})
        assert proc.holder.accept(later.to_json())  # a new config arrives mid-request
        yield request_body(CHAT)

    async def main() -> list[ep.ProcessingResponse]:
        return [r async for r in proc.Process(requests(), FakeContext(ATTEMPT))]  # type: ignore[arg-type]

    _, body = asyncio.run(main())
    assert orjson.loads(body.request_body.response.body_mutation.body)["model"] == "first-model"


# --- attempt stage ---------------------------------------------------------------------------


def test_attempt_stage_answers_each_message_of_an_attempt_in_order() -> None:
    responses = run(
        processor(),
        ATTEMPT,
        [
            request_headers(CLIENT_HEADERS, **{"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
            request_body(CHAT),
            response_headers({":status": "429"}),
            response_headers({":status": "200"}),
            TRAILERS,
        ],
    )
    assert kinds(responses) == [
        "request_headers",
        "request_body",
        "response_headers",
        "response_headers",
        "request_trailers",
    ]
    assert "authorization" in responses[0].request_headers.response.header_mutation.remove_headers
    assert header_sets(responses[1].request_body.response.header_mutation)["authorization"] == "Bearer sk-provider"
    assert header_sets(responses[2].response_headers.response.header_mutation)[":status"] == "503"  # for failover
    assert not responses[3].response_headers.HasField("response")


def test_attempt_stage_without_a_known_provider_is_a_503() -> None:
    responses = run(processor(), ATTEMPT, [request_headers(CLIENT_HEADERS), request_body(CHAT)])
    status, doc = immediate_json(responses[0])
    assert status == 503 and doc["error"]["code"] == "backend_not_configured"
    assert kinds(responses) == ["immediate_response", "request_body"]


# --- a bug inside a stage handler ----------------------------------------------------------------


def _boom(*_args: object, **_kwargs: object) -> ep.ProcessingResponse:
    raise RuntimeError("a bug in a stage handler")


ROUTER_MESSAGES = [
    request_headers(POST_CHAT),
    request_body(CHAT),
    response_headers({":status": "200", "content-type": "application/json"}),
    response_body(b"{}"),
    TRAILERS,
]
ROUTER_PHASES = ["on_request_headers", "on_request_body", "on_response_headers", "on_response_body"]


@pytest.mark.parametrize("phase", ROUTER_PHASES)
def test_router_stage_bug_is_a_logged_500_and_the_stream_goes_on(
    phase: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a dead stream (Envoy would answer 503 and retry) and never an untranslated passthrough."""
    monkeypatch.setattr(RouterRequest, phase, _boom)
    with caplog.at_level(logging.ERROR, logger="llmgw.extproc"):
        responses = run(processor(), ROUTER, ROUTER_MESSAGES)
    failed = ROUTER_PHASES.index(phase)
    status, doc = immediate_json(responses[failed])
    assert status == 500 and doc["error"]["code"] == "gateway_error"
    assert "bug" not in doc["error"]["message"]  # no internals in the client's answer
    assert len(responses) == len(ROUTER_MESSAGES) and kinds(responses)[-1] == "request_trailers"  # still answered
    assert "router stage failed" in caplog.text and "RuntimeError: a bug in a stage handler" in caplog.text


def test_router_stage_bug_answers_an_anthropic_client_in_its_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RouterRequest, "on_request_body", _boom)
    messages = {**POST_CHAT, ":path": "/v1/messages"}
    responses = run(processor(), ROUTER, [request_headers(messages), request_body({"model": "claude"})])
    status, doc = immediate_json(responses[1])
    assert status == 500 and doc["type"] == "error" and doc["error"]["type"] == "api_error"


@pytest.mark.parametrize("phase", ["on_request_headers", "on_request_body", "on_response_headers"])
def test_attempt_stage_bug_is_a_logged_500_and_the_stream_goes_on(
    phase: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(AttemptRequest, phase, _boom)
    messages = [
        request_headers(CLIENT_HEADERS, **{"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)}),
        request_body(CHAT),
        response_headers({":status": "200"}),
        TRAILERS,
    ]
    with caplog.at_level(logging.ERROR, logger="llmgw.extproc"):
        responses = run(processor(), ATTEMPT, messages)
    failed = ["on_request_headers", "on_request_body", "on_response_headers"].index(phase)
    status, doc = immediate_json(responses[failed])
    assert status == 500 and doc["error"]["code"] == "gateway_error"
    assert len(responses) == len(messages) and kinds(responses)[-1] == "request_trailers"
    assert "attempt stage failed" in caplog.text and "RuntimeError: a bug in a stage handler" in caplog.text


# --- the end of a router stream ------------------------------------------------------------------


def test_router_stage_is_told_when_its_stream_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str | None] = []
    monkeypatch.setattr(RouterRequest, "on_stream_closed", lambda self: closed.append(self.request_model))
    run(processor(), ROUTER, [request_headers(POST_CHAT), request_body(CHAT)])
    assert closed == ["gpt-4o"]


def test_router_stream_cut_by_envoy_is_still_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Envoy resetting the stream surfaces as an error from the request iterator: the request still hears of it."""
    closed: list[str | None] = []
    monkeypatch.setattr(RouterRequest, "on_stream_closed", lambda self: closed.append(self.request_model))
    proc = processor()

    async def requests() -> AsyncIterator[ep.ProcessingRequest]:
        yield request_headers(POST_CHAT)
        yield request_body(CHAT)
        raise ConnectionResetError("stream reset by Envoy")

    async def main() -> None:
        async for _ in proc.Process(requests(), FakeContext(ROUTER)):  # type: ignore[arg-type]
            pass

    with pytest.raises(ConnectionResetError):
        asyncio.run(main())
    assert closed == ["gpt-4o"]


def test_router_stage_bug_at_stream_close_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(RouterRequest, "on_stream_closed", _boom)
    with caplog.at_level(logging.ERROR, logger="llmgw.extproc"):
        responses = run(processor(), ROUTER, [request_headers(POST_CHAT), request_body(CHAT)])
    assert kinds(responses) == ["request_headers", "request_body"]
    assert "router stage failed on stream close" in caplog.text
