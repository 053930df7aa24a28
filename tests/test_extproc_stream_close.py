"""Envoy ends each ext_proc stream with a half-close, not a reset.

Why it matters: with Envoy's default close, every ext_proc stream is reset when
its request ends, every call ends CANCELLED in the worker, and grpc.aio leaks
the native op array of the batch that fails on the cancelled call
(grpc/grpc#43360): ~140 bytes per stream, a worker growing ~0.3 MB/min at
25 req/s without bound (bench/results/memory-soak.md). The bootstrap turns on
Envoy's graceful close; Envoy's own counter of resets it sent on the ext_proc
cluster shows whether it took effect.
"""

from __future__ import annotations

import httpx
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration


def _extproc_stats(gw: GatewayProcess) -> dict[str, int]:
    text = gw.admin("/stats?filter=^cluster\\.llmgw_extproc\\.").text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name.removeprefix("cluster.llmgw_extproc.")] = int(value)
    return out


def test_ext_proc_streams_end_without_reset(fake: FakeProviderThread, gateway_factory: type[GatewayProcess]) -> None:
    gw = gateway_factory(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
    gw.start()
    # /v1 is a direct route (router stage only); /openai rewrites the path, so it also has the attempt stage.
    for prefix in ("/v1", "/openai"):
        for stream in (False, True):
            for _ in range(3):
                resp = httpx.post(
                    f"{gw.url}{prefix}/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                    timeout=10,
                )
                assert resp.status_code == 200, resp.text

    def settled() -> dict[str, int] | None:
        stats = _extproc_stats(gw)  # 6 requests on /v1 (1 stream each) and 6 on /openai (2 each)
        return stats if stats.get("upstream_rq_completed", 0) >= 18 and not stats.get("upstream_rq_active") else None

    stats = wait_until(settled, what="ext_proc streams completed")
    assert stats.get("upstream_rq_tx_reset", 0) == 0, stats
