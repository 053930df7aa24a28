"""The supervisor's HTTP endpoints (controlplane/observability.py): metrics, readiness, pauses, keep-alive."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

from controlplane.observability import start_http
from extproc.cooldown import ORACLE_PATH
from tests.harness import free_ports


def test_endpoints_answer_on_one_keep_alive_connection(tmp_path: Path) -> None:
    state = {"ready": False}

    async def is_ready() -> tuple[bool, str]:
        return state["ready"], "envoy LIVE" if state["ready"] else "extproc not listening yet: w0"

    async def run() -> list[tuple[int, str, str]]:
        metrics_port, ready_port = free_ports(2)
        endpoints = await start_http(
            host="127.0.0.1",
            metrics_port=metrics_port,
            ready_port=ready_port,
            multiproc_dir=str(tmp_path),
            is_ready=is_ready,
            state_dir=str(tmp_path / "state"),
        )
        try:
            return await asyncio.to_thread(_ask, ready_port, metrics_port, state)
        finally:
            await endpoints.cleanup()

    answers = asyncio.run(run())
    assert answers[0] == (503, "text/plain; charset=utf-8", "extproc not listening yet: w0\n")
    assert answers[1] == (200, "text/plain; charset=utf-8", "envoy LIVE\n")
    assert answers[2] == (200, "text/plain; charset=utf-8", "ok\n")  # no provider paused
    assert answers[3][:2] == (404, "text/plain; charset=utf-8")
    status, ctype, _ = answers[4]
    assert status == 200 and ctype.startswith("text/plain; version=")  # Prometheus' exposition format


def _ask(ready_port: int, metrics_port: int, state: dict[str, bool]) -> list[tuple[int, str, str]]:
    out = []
    ready = http.client.HTTPConnection("127.0.0.1", ready_port, timeout=10)
    for path in ("/healthz/ready", "/healthz/ready", ORACLE_PATH, "/nope"):
        ready.request("GET", path, headers={"Host": "provider.example:443"})
        resp = ready.getresponse()
        out.append((resp.status, resp.getheader("Content-Type", ""), resp.read().decode()))
        state["ready"] = True  # the same connection is reused for every request
    ready.close()
    metrics = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    metrics.request("GET", "/metrics")
    resp = metrics.getresponse()
    out.append((resp.status, resp.getheader("Content-Type", ""), resp.read().decode()))
    metrics.close()
    return out
