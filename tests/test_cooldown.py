"""Retry-After pauses: parsing, the shared board, the oracle and the attempt stage's part (no Envoy)."""

from __future__ import annotations

import asyncio
import email.utils
import socket
from pathlib import Path

import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import text_format

from controlplane.observability import start_http
from extproc.attempt_stage import AttemptRequest
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.cooldown import MAX_PAUSE_S, ORACLE_PATH, CooldownBoard, pause_key, retry_after_seconds
from extproc.router_stage import RouterRequest
from extproc.wire import IMMEDIATE_HC_FAIL_HEADER, MODEL_HEADER, UPSTREAM_STATUS_HEADER
from tests.extproc_protos import attributes, header_sets, http_headers

PRIMARY, SECONDARY = "default/b/primary", "default/b/secondary"


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms wins
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=1_000_000) == pytest.approx(30)
    assert retry_after_seconds({"retry-after": "86400"}) == MAX_PAUSE_S
    for none in ({}, {"retry-after": "0"}, {"retry-after": "-3"}, {"retry-after": "soon"}, {"retry-after": "nan"}):
        assert retry_after_seconds(none) is None, none
    assert retry_after_seconds({"retry-after": email.utils.formatdate(10, usegmt=True)}, now=20) is None


def test_board_is_shared_through_its_directory_and_never_shortens(tmp_path: Path) -> None:
    one, two = CooldownBoard(tmp_path), CooldownBoard(tmp_path)  # two worker processes
    assert one.remaining(PRIMARY, now=100) == 0
    assert one.note(PRIMARY, 10, now=100) is True
    assert two.remaining(PRIMARY, now=104) == pytest.approx(6)
    assert two.note(PRIMARY, 2, now=104) is False  # a shorter pause does not shorten it
    assert one.remaining(PRIMARY, now=104) == pytest.approx(6)
    assert two.note(PRIMARY, 20, now=104) is False  # extended, but already paused
    assert one.remaining_for_key(pause_key(PRIMARY), now=110) == pytest.approx(14)
    assert one.remaining(SECONDARY, now=104) == 0
    assert one.remaining_for_key("../etc/passwd") == 0  # the oracle passes what Envoy sent
    assert [p.name for p in tmp_path.iterdir()] == [pause_key(PRIMARY)]


def test_board_without_directory_is_per_process() -> None:
    board = CooldownBoard()
    assert board.note(PRIMARY, 5, now=0) and board.remaining(PRIMARY, now=1) == 4
    assert CooldownBoard().remaining(PRIMARY, now=1) == 0


def test_pause_key_is_a_hostname() -> None:
    key = pause_key("ns/backend/provider name")
    assert key.startswith("p-") and key[2:].isalnum() and len(key) <= 63


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_oracle_answers_503_while_paused(tmp_path: Path) -> None:
    async def run() -> list[int]:
        async def ready() -> tuple[bool, str]:
            return True, "ok"

        port = _free_port()
        runner = await start_http(
            host="127.0.0.1",
            metrics_port=_free_port(),
            ready_port=port,
            multiproc_dir=str(tmp_path),
            is_ready=ready,
            state_dir=str(tmp_path / "state"),
        )
        CooldownBoard(tmp_path / "state").note(PRIMARY, 60)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                codes = []
                for pid in (PRIMARY, SECONDARY):
                    r = await client.get(ORACLE_PATH, headers={"host": pause_key(pid)})
                    codes.append(r.status_code)
                return codes
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == [503, 200]


# --- attempt and router stages ---------------------------------------------------------------


def _config() -> ExtprocConfig:
    providers = {
        pid: ProviderConfig(id=pid, backend="default/b", kind="openai", host="h") for pid in (PRIMARY, SECONDARY)
    }
    return ExtprocConfig(version="v", providers=providers)


def _metadata(pid: str, *, pausable: bool) -> str:
    meta = base_pb2.Metadata()
    meta.filter_metadata["envoy.transport_socket_match"].update({"provider": pid})
    meta.filter_metadata["llmgw"].update({"provider": pid, **({"pausable": True} if pausable else {})})
    return text_format.MessageToString(meta, as_one_line=True)


def _attempt(board: CooldownBoard, pid: str, *, pausable: bool = True) -> tuple[AttemptRequest, ep.ProcessingResponse]:
    ar = AttemptRequest(config=_config(), cooldowns=board)
    req = ep.ProcessingRequest(
        request_headers=http_headers(
            {":method": "POST", ":path": "/v1/chat/completions", ":authority": "gw", MODEL_HEADER: "gpt-4o"}
        ),
        attributes=attributes({"xds.upstream_host_metadata": _metadata(pid, pausable=pausable)}),
    )
    return ar, ar.on_request_headers(req)


def _upstream_answer(ar: AttemptRequest, headers: dict[str, str]) -> dict[str, str]:
    resp = ar.on_response_headers(ep.ProcessingRequest(response_headers=http_headers(headers)))
    return header_sets(resp.response_headers.response.header_mutation)


def test_retry_after_pauses_a_pausable_provider_and_envoy_is_told() -> None:
    board = CooldownBoard()
    ar, first = _attempt(board, PRIMARY)
    assert first.WhichOneof("response") == "request_headers" and ar.pausable
    changes = _upstream_answer(ar, {":status": "429", "retry-after": "5"})
    assert changes == {IMMEDIATE_HC_FAIL_HEADER: "true"}  # the status stays 429: no outlier count
    assert board.remaining(PRIMARY) == pytest.approx(5, abs=1)
    assert board.remaining(SECONDARY) == 0
    ar, _ = _attempt(board, SECONDARY)
    assert _upstream_answer(ar, {":status": "503", "retry-after-ms": "1500"}) == {IMMEDIATE_HC_FAIL_HEADER: "true"}


def test_without_retry_after_or_without_the_oracle_a_429_still_counts_for_outlier_detection() -> None:
    board = CooldownBoard()
    ar, _ = _attempt(board, PRIMARY)
    assert _upstream_answer(ar, {":status": "429"}) == {":status": "503", UPSTREAM_STATUS_HEADER: "429"}
    assert _upstream_answer(ar, {":status": "503"}) == {}
    assert _upstream_answer(ar, {":status": "200", "retry-after": "3"}) == {}
    ar, _ = _attempt(board, PRIMARY, pausable=False)  # no health check to end a pause: no pause
    assert _upstream_answer(ar, {":status": "429", "retry-after": "3"}) == {
        ":status": "503",
        UPSTREAM_STATUS_HEADER: "429",
    }
    assert board.remaining(PRIMARY) == 0


def test_when_every_provider_is_paused_the_attempt_answers_429_in_the_client_schema() -> None:
    board = CooldownBoard()
    board.note(PRIMARY, 30)
    _, resp = _attempt(board, PRIMARY)  # the secondary is available: Envoy's race, let it through
    assert resp.WhichOneof("response") == "request_headers"
    board.note(SECONDARY, 12)
    _, resp = _attempt(board, PRIMARY)
    assert resp.WhichOneof("response") == "immediate_response"
    ir = resp.immediate_response
    assert ir.status.code == 429 and header_sets(ir.headers)["retry-after"] == "12"
    assert b'"code":"providers_paused"' in ir.body


def test_router_stage_turns_no_healthy_upstream_into_429_and_hides_the_hc_header() -> None:
    board = CooldownBoard()
    for pid in (PRIMARY, SECONDARY):
        board.note(pid, 8)
    rr = RouterRequest(gateway="default/gw", config=_config(), cooldowns=board)
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/messages"}))
    req = ep.ProcessingRequest(
        response_headers=http_headers({":status": "503", "content-length": "99"}),
        attributes=attributes({"xds.cluster_name": "aibackend/default/b"}),
    )
    resp = rr.on_response_headers(req)
    mutation = resp.response_headers.response.header_mutation
    assert header_sets(mutation)[":status"] == "429" and header_sets(mutation)["retry-after"] == "8"
    body = rr.on_response_body(ep.HttpBody(body=b"no healthy upstream", end_of_stream=True))
    replaced = body.response_body.response.body_mutation.body
    assert replaced.startswith(b'{"type":"error","error":{"type":"rate_limit_error"')  # Anthropic client

    rr = RouterRequest(gateway="default/gw", config=_config(), cooldowns=CooldownBoard())
    rr.on_request_headers(http_headers({":method": "POST", ":path": "/v1/chat/completions"}))
    req = ep.ProcessingRequest(
        response_headers=http_headers({":status": "429", IMMEDIATE_HC_FAIL_HEADER: "true"}),
        attributes=attributes({"xds.upstream_host_metadata": _metadata(PRIMARY, pausable=True)}),
    )
    resp = rr.on_response_headers(req)
    assert IMMEDIATE_HC_FAIL_HEADER in resp.response_headers.response.header_mutation.remove_headers
