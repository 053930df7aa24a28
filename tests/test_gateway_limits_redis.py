"""Two gateway replicas sharing one real Redis enforce one limit and one budget between them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.redis_server import RedisServer
from tests.harness import GatewayProcess
from tests.limits_manifests import limits_manifests
from tests.test_gateway_limits import _chat, _client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def replicas(provider: FakeProviderThread) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    redis = RedisServer().start()
    started = []
    try:
        for _ in range(2):
            gw = GatewayProcess(workers=1, env={"LLMGW_STORE": redis.url})
            gw.write("gw.yaml", limits_manifests(port=gw.port, upstream_port=provider.port, requests=10))
            started.append(gw)
            gw.start()
        yield started[0], started[1]
    finally:
        for gw in started:
            gw.stop()
            gw.cleanup()
        redis.cleanup()


def test_request_limit_is_shared_by_the_replicas(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    clients = [_client(gw, "/v1") for gw in replicas for _ in range(6)]
    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(lambda i: _chat(clients[i % len(clients)])[0], range(36)))
    assert results.count(200) == 10 and results.count(429) == 26


def test_usd_budget_is_shared_by_the_replicas_streaming(replicas: tuple[GatewayProcess, GatewayProcess]) -> None:
    """$0.02 for team green, $0.007 a stream: three streams in all, whichever replica serves them."""
    outcomes = []
    for i in range(6):
        client = _client(replicas[i % 2], "/usd", **{"x-team": "green"})
        try:
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "a b"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            assert chunks[-1].usage is not None
            outcomes.append(200)
        except openai.RateLimitError:
            outcomes.append(429)
    assert outcomes == [200, 200, 200, 429, 429, 429]
