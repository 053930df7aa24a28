"""Redis killed mid-load: a FailOpen gateway keeps serving, a FailClosed one answers 503 at once.

Never a hang: the store's socket timeout bounds each request (the client's own
timeout is far above it and is never reached). Both count the failures in
`llmgw_limits_store_errors_total` and log them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.redis_server import RedisServer
from tests.harness import GatewayProcess, wait_until
from tests.limits_manifests import limits_manifests

pytestmark = [pytest.mark.integration, pytest.mark.faults]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a b"}]}


@pytest.fixture
def setup() -> Iterator[tuple[FakeProviderThread, RedisServer, GatewayProcess, GatewayProcess]]:
    fp = FakeProviderThread(name="fake").start()
    redis = RedisServer().start()
    gateways = []
    try:
        for mode in ("FailOpen", "FailClosed"):
            gw = GatewayProcess(workers=2, env={"LLMGW_STORE": redis.url, "LLMGW_STORE_FAILURE_MODE": mode})
            gw.write("gw.yaml", limits_manifests(port=gw.port, upstream_port=fp.port, requests=100_000))
            gateways.append(gw)
            gw.start()
        yield fp, redis, gateways[0], gateways[1]
    finally:
        for gw in gateways:
            gw.stop()
            gw.cleanup()
        redis.cleanup()
        fp.stop()


def _load(gw: GatewayProcess, n: int) -> Counter[str]:
    def one(_: int) -> str:
        try:
            r = httpx.post(gw.url + "/v1/chat/completions", json=BODY, timeout=10)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if r.status_code == 503:
            body = r.json()
            assert body["error"]["code"] == "limits_unavailable" and r.headers["retry-after"] == "1"
        return str(r.status_code)

    with ThreadPoolExecutor(4) as pool:
        return Counter(pool.map(one, range(n)))


def test_redis_killed_mid_load(setup: tuple[FakeProviderThread, RedisServer, GatewayProcess, GatewayProcess]) -> None:
    fp, redis, fail_open, fail_closed = setup
    with ThreadPoolExecutor(2) as pool:
        during_open = pool.submit(_load, fail_open, 60)
        during_closed = pool.submit(_load, fail_closed, 60)
        wait_until(lambda: len(fp.requests) >= 10, "load under way")
        redis.stop()
        assert during_open.result() == {"200": 60}  # FailOpen: Redis's death is invisible to clients
        assert set(during_closed.result()) <= {"200", "503"}  # FailClosed: 503 in the client's schema, no hang
    assert _load(fail_open, 12) == {"200": 12}
    assert _load(fail_closed, 12) == {"503": 12}
    for gw, mode in ((fail_open, "FailOpen"), (fail_closed, "FailClosed")):
        wait_until(lambda gw=gw, mode=mode: f'failure_mode="{mode}"' in gw.metrics(), f"{mode} store error metric")
        assert "limits store unavailable on take" in gw.log()
