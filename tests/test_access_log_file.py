"""`llmgw run > file` keeps every access log line whole.

A shell's `>` opens the file without O_APPEND and every process inherits that
one descriptor. Envoy's access log must write through it (the stdout logger),
not reopen `/dev/stdout` with an offset of its own, or Envoy and the Python
processes overwrite each other's lines.
"""

from __future__ import annotations

import json
import signal
import subprocess

import httpx
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration
REQUESTS = 30


def test_access_log_lines_stay_whole_when_stdout_is_a_truncated_file(fake: FakeProviderThread) -> None:
    gw = GatewayProcess(workers=2, env={"LLMGW_LOG_LEVEL": "DEBUG"})  # Python logs interleave with Envoy's
    try:
        gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
        out = gw.dir / "stdout.log"
        with out.open("wb") as stdout:  # O_WRONLY | O_TRUNC, like `>`
            proc = subprocess.Popen(gw.command(), stdout=stdout, stderr=subprocess.STDOUT, cwd=REPO, env=gw.env)
        try:
            ready = f"http://127.0.0.1:{gw.ready_port}/healthz/ready"
            wait_until(lambda: _ok(ready), timeout=30, what="gateway ready")
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(REQUESTS):
                assert httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        lines = out.read_text(errors="replace").splitlines()
        records = [json.loads(line) for line in lines if line.startswith('{"')]
        requests = [r for r in records if r.get("path") == "/v1/chat/completions"]
        assert len(requests) == REQUESTS, "\n".join(line for line in lines if line.startswith("{"))[-2000:]
        assert all(r["status"] == 200 for r in requests)
    finally:
        gw.cleanup()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
