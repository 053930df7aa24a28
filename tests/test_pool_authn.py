"""llmgw's endpoint picker runs after authentication: a refused request never changes its state.

The router stage authenticates on the request headers and picks an InferencePool
endpoint last on the body; a request that model routing moves to a pool route it
is not authenticated for is not picked for (Envoy's authentication guard answers
it 401). Real ext_proc protos, a real LoadBoard (its scraping finds nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

from extproc import wire
from extproc.contract import ApiKeyEntry, ApiKeyPolicyConfig, AuthnConfig, ExtprocConfig, PoolPickConfig
from extproc.picker.scraper import LoadBoard
from extproc.router_stage import RouterRequest
from tests.extproc_protos import GATEWAY, body_msg, header_sets, http_headers, immediate_json, make_config

ALICE = "sk-alice-123"
ROUTE_A = wire.authn_route_name("httproute/ns/a/rule/0/match/0", "strict1")
ROUTE_B = wire.authn_route_name("httproute/ns/b/rule/0/match/0", "other2")
AI_ROUTE = wire.authn_route_name("httproute/ns/ai/rule/0/match/0", "strict1")
POD_A, POD_B = "10.0.0.1:8000", "10.0.0.2:8000"


def _config() -> ExtprocConfig:
    entry = ApiKeyEntry(key_id="ns/keys/alice", sha256=hashlib.sha256(ALICE.encode()).hexdigest(), user="alice")
    return dataclasses.replace(
        make_config(),
        authn={
            "strict1": AuthnConfig(id="strict1", api_key=ApiKeyPolicyConfig(id="strict1", mode="Strict", keys=[entry])),
            "other2": AuthnConfig(id="other2", api_key=ApiKeyPolicyConfig(id="other2", mode="Strict", keys=[])),
        },
        gateway_authn={GATEWAY: ["strict1", "other2"]},
        pools={"ns/a": PoolPickConfig(endpoints=[POD_A]), "ns/b": PoolPickConfig(endpoints=[POD_B])},
        pool_routes={ROUTE_A: "ns/a", ROUTE_B: "ns/b"},
        pool_models={GATEWAY: {"model-b": ROUTE_B}},
    )


def _request(board: LoadBoard, key: str, route: str) -> tuple[RouterRequest, object]:
    rr = RouterRequest(gateway=GATEWAY, config=_config(), loads=board)
    headers = {":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw", "x-api-key": key}
    return rr, rr.on_request_headers(http_headers(headers), route_name=route)


def _body(rr: RouterRequest, model: str) -> dict[str, str]:
    resp = rr.on_request_body(body_msg({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
    assert resp.WhichOneof("response") == "request_body", resp
    return header_sets(resp.request_body.response.header_mutation)


def test_the_pick_follows_authentication_and_a_refused_request_leaves_no_trace() -> None:
    async def scenario() -> None:
        board = LoadBoard()
        try:
            # Refused on the headers (the guard route of pool route A): no body, no pick.
            _, refused = _request(board, "wrong", ROUTE_A + wire.AUTHN_GUARD_SUFFIX)
            assert immediate_json(refused)[0] == 401  # type: ignore[arg-type]
            assert board.sent == {} and board.wanted == {}

            # Authenticated on the guard route: the pick is for the route it guards.
            rr, _ = _request(board, ALICE, ROUTE_A + wire.AUTHN_GUARD_SUFFIX)
            assert _body(rr, "model-a")[wire.DESTINATION_ENDPOINT_HEADER] == POD_A
            assert board.sent == {POD_A: 1}

            # Matched on the headers to an AI route, moved by its model to pool route B, whose
            # authentication it lacks: Envoy's guard answers 401 after the body, so no pick.
            rr, _ = _request(board, ALICE, AI_ROUTE)
            assert wire.DESTINATION_ENDPOINT_HEADER not in _body(rr, "model-b")
            assert board.sent == {POD_A: 1} and POD_B not in board.wanted
        finally:
            await board.close()

    asyncio.run(scenario())
