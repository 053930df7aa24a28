"""The stages' guard glue, driven with real ext_proc protos (no Envoy): body mutations, headers, metadata.

What the integration tests cannot see directly: the content-length that follows a masked body,
the access-log fields each stage writes, the stage-to-stage header the router stage removes,
and a stream left unguarded without `streaming: Enabled` being reported as such.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import wire
from extproc.attempt_stage import AttemptRequest
from extproc.contract import ExtprocConfig
from extproc.policies.guards.config import GuardConfig, PromptGuardConfig
from extproc.router_stage import RouterRequest
from tests.extproc_protos import (
    CLIENT_HEADERS,
    GATEWAY,
    PROVIDER_ID,
    attributes,
    header_sets,
    host_metadata_text,
    http_headers,
    immediate_json,
    llmgw_meta,
    make_config,
)

ROUTE = "httproute/default/r/rule/0/match/0"
MASK_EMAIL = GuardConfig(kind="regex", message="m", builtins=("Email",))
REJECT_SSN = GuardConfig(kind="regex", message="No SSNs.", status=422, action="Reject", builtins=("Ssn",))
MASK_CARD = GuardConfig(kind="regex", message="m", builtins=("CreditCard",))


def config(*, streaming: bool = True, direct: bool = True) -> ExtprocConfig:
    base = make_config()
    guards = PromptGuardConfig(request=(REJECT_SSN, MASK_EMAIL), response=(MASK_CARD,), streaming=streaming)
    return replace(base, guards={"default/b": guards}, direct_routes={ROUTE: PROVIDER_ID} if direct else {})


def chat(text: str, **extra: object) -> bytes:
    return orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra})


def direct_router(cfg: ExtprocConfig) -> RouterRequest:
    rr = RouterRequest(gateway=GATEWAY, config=cfg)
    rr.on_request_headers(
        http_headers({":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw"}), route_name=ROUTE
    )
    return rr


def response_headers(
    rr: RouterRequest, extra: dict[str, str] | None = None, *, stream: bool = False
) -> ep.ProcessingResponse:
    headers = {":status": "200", "content-type": "text/event-stream" if stream else "application/json"}
    attrs = attributes(
        {
            "xds.route_name": ROUTE,
            "xds.cluster_name": "aibackend/default/b",
            "xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID),
        }
    )
    req = ep.ProcessingRequest(response_headers=http_headers({**headers, **(extra or {})}), attributes=attrs)
    return rr.on_response_headers(req)


def test_direct_route_mask_replaces_the_body_and_its_length() -> None:
    rr = direct_router(config())
    resp = asyncio.run(rr.process_request_body(ep.HttpBody(body=chat("mail a@b.co"), end_of_stream=True)))
    common = resp.request_body.response
    sent = orjson.loads(common.body_mutation.body)
    assert sent["messages"][0]["content"] == "mail <EMAIL_ADDRESS>"
    assert header_sets(common.header_mutation)["content-length"] == str(len(common.body_mutation.body))
    assert header_sets(common.header_mutation)["authorization"] == "Bearer sk-provider"
    assert llmgw_meta(resp)[wire.GUARD_REQUEST_METADATA_KEY] == "regex:allow,regex:mask"


def test_direct_route_rejection_is_the_routers_own_reply() -> None:
    rr = direct_router(config())
    resp = asyncio.run(rr.process_request_body(ep.HttpBody(body=chat("ssn 123-45-6789"), end_of_stream=True)))
    status, doc = immediate_json(resp)
    assert status == 422 and doc["error"]["message"] == "No SSNs." and rr.done
    assert not [k for k in header_sets(resp.immediate_response.headers) if k.startswith("x-llmgw")]
    assert rr.guard_request == "regex:reject"


def test_attempt_stage_rejection_carries_its_decisions_to_the_router() -> None:
    cfg = config(direct=False)
    attempt = AttemptRequest(config=cfg)
    attrs = attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID), "xds.route_name": ROUTE})
    attempt.on_request_headers(ep.ProcessingRequest(request_headers=http_headers(CLIENT_HEADERS), attributes=attrs))
    assert attempt.route == "default/r"
    resp = asyncio.run(attempt.on_request_body_async(ep.HttpBody(body=chat("ssn 123-45-6789"), end_of_stream=True)))
    status, _ = immediate_json(resp)
    assert status == 422
    assert header_sets(resp.immediate_response.headers)[wire.GUARD_HEADER] == "regex:reject"
    rr = RouterRequest(gateway=GATEWAY, config=cfg)
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    out = response_headers(rr, {wire.ANSWERED_HEADER: "1", wire.GUARD_HEADER: "regex:reject", ":status": "422"})
    assert wire.GUARD_HEADER in out.response_headers.response.header_mutation.remove_headers
    assert rr.guard_request == "regex:reject" and rr.response_guards == ()  # the gateway's own error: no guard


def test_json_response_mask_drops_the_length_and_reports() -> None:
    rr = direct_router(config())
    asyncio.run(rr.process_request_body(ep.HttpBody(body=chat("hi"), end_of_stream=True)))
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "card 4111111111111111"}}]}
    raw = orjson.dumps(answer)
    headers = response_headers(rr, {"content-length": str(len(raw))})
    assert "content-length" in headers.response_headers.response.header_mutation.remove_headers
    resp = asyncio.run(rr.on_response_body_async(ep.HttpBody(body=raw, end_of_stream=True)))
    body = orjson.loads(resp.response_body.response.body_mutation.body)
    assert body["choices"][0]["message"]["content"] == "card <CREDIT_CARD>"
    assert llmgw_meta(resp)[wire.GUARD_RESPONSE_METADATA_KEY] == "regex:mask"


def test_streams_are_not_guarded_unless_enabled_and_say_so() -> None:
    rr = direct_router(config(streaming=False))
    asyncio.run(rr.process_request_body(ep.HttpBody(body=chat("hi", stream=True), end_of_stream=True)))
    headers = response_headers(rr, stream=True)
    assert rr.stream_guard is None and rr.stream_hold is None
    assert llmgw_meta(headers)[wire.GUARD_RESPONSE_METADATA_KEY] == "regex:not_applied"
    event = b'data: {"choices":[{"index":0,"delta":{"content":"4111111111111111"}}]}\n\n'
    resp = asyncio.run(rr.on_response_body_async(ep.HttpBody(body=event, end_of_stream=False)))
    assert not resp.response_body.response.HasField("body_mutation")  # passed through as agentgateway does
