"""Bad input and broken parts: every failure is a clear client-schema error, never a hang.

Through the real gateway: malformed bodies, missing model, oversized bodies,
no route, provider errors and an unreachable provider, and a killed extproc
worker (the supervisor restarts it and service resumes).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, free_port, gateway_manifests, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=provider.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _post(gw: GatewayProcess, path: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, content=content, headers=headers, timeout=10)


def _openai_error(resp: httpx.Response) -> dict[str, object]:
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code", "param"} <= set(body["error"]), body
    return body["error"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"hello, plain text", "invalid_json"),
        (b"[1, 2, 3]", "invalid_body"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "missing_model"),
        (b'{"model": "", "messages": []}', "missing_model"),
        (b'{"model": 42}', "missing_model"),
    ],
)
def test_bad_bodies_get_400_openai_error(gateway: GatewayProcess, body: bytes, code: str) -> None:
    resp = _post(gateway, "/v1/chat/completions", body, **{"content-type": "application/json"})
    assert resp.status_code == 400
    assert _openai_error(resp)["code"] == code


def test_post_without_body_is_400(gateway: GatewayProcess) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", timeout=10)
    assert resp.status_code == 400
    assert _openai_error(resp)["code"] == "missing_body"


def test_anthropic_path_gets_anthropic_error_schema(gateway: GatewayProcess) -> None:
    resp = _post(gateway, "/v1/messages", b"{oops", **{"content-type": "application/json"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_sdk_sees_bad_request_error(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}])
    assert "model" in str(err.value)


def test_unmatched_path_is_404_openai_error(gateway: GatewayProcess) -> None:
    resp = httpx.get(gateway.url + "/nowhere", timeout=10)
    assert resp.status_code == 404
    # No route (Envoy's local reply), or an AI route's path that is no operation (the allowlist): both OpenAI's 404
    assert _openai_error(resp)["code"] in ("route_not_found", "unknown_operation")


def test_large_bodies_up_to_the_limit(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    filler = "a" * (9 * 1024 * 1024)
    ok = _post(
        gateway,
        "/v1/chat/completions",
        b'{"model": "big", "messages": [{"role": "user", "content": "' + filler.encode() + b'"}]}',
        **{"content-type": "application/json"},
    )
    assert ok.status_code == 200, ok.text[:300]
    too_big = _post(
        gateway, "/v1/chat/completions", b"{" + b" " * (11 * 1024 * 1024) + b"}", **{"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    assert _openai_error(too_big)["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("status", "etype"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (429, "rate_limit_error"), (500, "server_error")],
)
def test_provider_errors_reach_client_with_status(
    gateway: GatewayProcess, provider: FakeProviderThread, status: int, etype: str
) -> None:
    provider.set_behaviour(error_status=status, error_count=1, retry_after=7 if status == 429 else None)
    try:
        resp = _post(
            gateway, "/v1/chat/completions", b'{"model": "m", "messages": []}', **{"content-type": "application/json"}
        )
    finally:
        provider.reset_behaviour()
    assert resp.status_code == status
    assert _openai_error(resp)["type"] == etype
    if status == 429:
        assert resp.headers["retry-after"] == "7"


def test_provider_unreachable_is_503_openai_error(gateway_factory: type[GatewayProcess]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    gw = gateway_factory(workers=1)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=dead_port))
    gw.start()
    resp = _post(gw, "/v1/chat/completions", b'{"model": "m", "messages": []}', **{"content-type": "application/json"})
    assert resp.status_code in (502, 503)
    assert _openai_error(resp)["code"] == "upstream_unavailable"


def test_killed_extproc_gives_fast_5xx_and_recovers(
    gateway_factory: type[GatewayProcess], fake: FakeProviderThread
) -> None:
    gw = gateway_factory(workers=1)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
    gw.start()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=5)
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}]).choices
    [worker] = [p for p in gw.child_pids() if b"extproc" in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(worker, signal.SIGKILL)
    # While it is gone: a JSON 5xx within the client's timeout, never a hang.
    try:
        resp = _post(
            gw, "/v1/chat/completions", b'{"model": "m", "messages": []}', **{"content-type": "application/json"}
        )
        if resp.status_code != 200:
            assert resp.status_code in (500, 503)
            assert _openai_error(resp)["code"] in ("gateway_unavailable", "gateway_error")
    except httpx.TimeoutException:  # pragma: no cover - this is the bug the test exists for
        pytest.fail("the gateway hung while the extproc was down")

    def served() -> bool:
        try:
            r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "back"}])
        except openai.APIStatusError:
            return False
        return r.choices[0].message.content == "Hello from fake: back"

    wait_until(served, timeout=20, what="service after the extproc restart")
    assert "extproc-0" in gw.log() and "restarting" in gw.log()


def test_port_in_use_exits_with_clear_message(gateway_factory: type[GatewayProcess], fake: FakeProviderThread) -> None:
    gw = gateway_factory(workers=1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", gw.port))
        s.listen()
        gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
        with pytest.raises(RuntimeError) as err:
            gw.start(timeout=15)
    assert f"cannot listen on 127.0.0.1:{gw.port}" in str(err.value)
    assert gw.stop() == 1


def test_invalid_config_at_start_exits_1(gateway_factory: type[GatewayProcess]) -> None:
    gw = gateway_factory(workers=1)
    gw.write(
        "gw.yaml",
        gateway_manifests(port=gw.port, upstream_port=free_port()).replace(
            "secretRef: {name: fake-key}", "secretRef: {name: missing-secret}"
        ),
    )
    with pytest.raises(RuntimeError) as err:
        gw.start(timeout=15)
    assert "Secret default/missing-secret not found" in str(err.value)
    assert "gw.yaml" in str(err.value) and "spec.policies.auth.secretRef" in str(err.value)
    assert gw.stop() == 1


def test_killed_worker_with_a_sibling_fails_no_request(
    gateway_factory: type[GatewayProcess], fake: FakeProviderThread
) -> None:
    gw = gateway_factory(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
    gw.start()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=5)
    workers = [p for p in gw.child_pids() if b"extproc" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    for i in range(30):  # Envoy retries the stream on the other worker
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"r{i}"}])
        assert reply.choices[0].message.content == f"Hello from fake: r{i}"


def test_envoy_errors_on_messages_path_use_anthropic_schema(gateway: GatewayProcess) -> None:
    resp = httpx.post(gateway.url + "/nowhere/v1/messages", json={"model": "m"}, timeout=10)
    assert resp.status_code == 404
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error", body
