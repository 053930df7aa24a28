"""The router stage's limit step: checked after the body is parsed and before it is forwarded,
x-ratelimit-* on the response, 429 in the client's schema, the charge queued at the end (cut streams too)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.contract import LimitRuleConfig
from extproc.router_stage import RouterRequest
from extproc.store.sqlite import SqliteStore
from tests.extproc_protos import GATEWAY, body_msg, header_sets, http_headers, immediate_json, make_config
from tests.test_router_stage import CONTENT_1, response_headers

ROUTE = "httproute/default/openai/rule/0/match/0"
RULES = (
    LimitRuleConfig(id="default/p/local/0", kind="requests", amount=2, unit="day"),
    LimitRuleConfig(id="default/p/local/1", kind="tokens", amount=1000, unit="day"),
)


def _router(store: SqliteStore, path: str = "/v1/chat/completions") -> RouterRequest:
    config = replace(make_config(), limits={ROUTE: RULES})
    rr = RouterRequest(gateway=GATEWAY, config=config, store=store)
    rr.on_request_headers(
        http_headers({":method": "POST", ":path": path, ":authority": "gw", "content-type": "application/json"}),
        route_name=ROUTE,
    )
    return rr


def _body(rr: RouterRequest, body: dict[str, object]) -> ep.ProcessingResponse:
    return asyncio.run(rr.process_request_body(body_msg(body)))


def test_limited_route_gets_headers_then_429_in_the_clients_schema() -> None:
    store = SqliteStore(":memory:")
    for remaining in ("1", "0"):
        rr = _router(store)
        resp = _body(rr, {"model": "gpt-4o", "messages": [], "max_tokens": 10})
        assert resp.WhichOneof("response") == "request_body"
        sets = header_sets(response_headers(rr, {":status": "200"}).response_headers.response.header_mutation)
        assert sets["x-ratelimit-remaining-requests"] == remaining
        assert sets["x-ratelimit-limit-tokens"] == "1000"
    refused = _body(_router(store), {"model": "gpt-4o", "messages": []})
    status, body = immediate_json(refused)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert header_sets(refused.immediate_response.headers)["retry-after"].isdigit()
    anthropic = _body(_router(store, "/v1/messages"), {"model": "claude", "messages": [], "max_tokens": 5})
    status, body = immediate_json(anthropic)
    assert status == 429 and body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": body["error"]["message"]},
    }


def test_a_bad_body_is_a_400_and_takes_nothing() -> None:
    store = SqliteStore(":memory:")
    rr = _router(store)
    status, _ = immediate_json(asyncio.run(rr.process_request_body(body_msg(b"{not json"))))
    assert status == 400
    rr = _router(store)
    _body(rr, {"model": "gpt-4o", "messages": []})
    sets = header_sets(response_headers(rr, {":status": "200"}).response_headers.response.header_mutation)
    assert sets["x-ratelimit-remaining-requests"] == "1"


def test_a_cut_stream_is_charged_when_the_stream_closes() -> None:
    store = SqliteStore(":memory:")
    rr = _router(store)
    _body(rr, {"model": "gpt-4o", "stream": True, "messages": [], "max_tokens": 100})
    reserved = rr.reserved_tokens
    response_headers(rr, {":status": "200", "content-type": "text/event-stream"})
    rr.on_response_body(ep.HttpBody(body=CONTENT_1, end_of_stream=False))
    assert rr.pending is None
    rr.on_stream_closed()
    assert rr.pending is not None
    asyncio.run(rr.settle())
    after = _router(store)
    _body(after, {"model": "gpt-4o", "messages": []})  # reserves its own estimate too
    sets = header_sets(response_headers(after, {":status": "200"}).response_headers.response.header_mutation)
    assert int(sets["x-ratelimit-remaining-tokens"]) == 1000 - int(reserved[1]) - int(after.reserved_tokens[1])
