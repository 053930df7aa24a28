"""traffic.rateLimit.global through Envoy's own ratelimit filter against a rate-limit service
speaking Envoy's protocol (tests/fakes/ratelimit_service.py): refusals in the client's schema,
token hits sent at stream end, and the service down with FailClosed."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.ratelimit_service import FakeRateLimitService
from tests.harness import GatewayProcess, free_port, gateway_yaml, http_route_yaml, route_rule, wait_until
from tests.test_gateway_limits import _chat, _client

pytestmark = pytest.mark.integration


def manifests(*, port: int, upstream: int, rls: int, down: int) -> str:
    def policy(name: str, route: str, target: int, descriptors: str) -> str:
        return f"""---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]
  traffic:
    rateLimit:
      global:
        url: http://127.0.0.1:{target}
        domain: llmgw-test
        descriptors: {descriptors}
"""

    return (
        gateway_yaml(port=port)
        + http_route_yaml(route_rule("/v1", "fake"), name="chat")
        + http_route_yaml(route_rule("/down", "fake", rewrite=True), name="down")
        + http_route_yaml(route_rule("/free", "fake", rewrite=True), name="free")
        + policy(
            "global",
            "chat",
            rls,
            """
          - entries: [{name: team, expression: 'request.headers["x-team"]'}]
          - entries: [{name: tokens, expression: '"chat"'}]
            unit: Tokens""",
        )
        + policy("down", "down", down, "[{entries: [{name: team, expression: '\"any\"'}]}]")
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: fake, namespace: default}}
spec:
  ai:
    provider: {{openai: {{}}, host: 127.0.0.1, port: {upstream}}}
  policies:
    auth: {{key: sk-test-key}}
"""
    )


@pytest.fixture(scope="module")
def rls() -> Iterator[FakeRateLimitService]:
    service = FakeRateLimitService(limits={"team": 3}).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def gateway(rls: FakeRateLimitService) -> Iterator[GatewayProcess]:
    fp = FakeProviderThread(name="fake").start()
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", manifests(port=gw.port, upstream=fp.port, rls=rls.port, down=free_port()))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()


def test_refused_by_the_service_in_the_clients_schema_with_retry_after(gateway: GatewayProcess) -> None:
    red = _client(gateway, "/v1", **{"x-team": "red"})
    results = [_chat(red) for _ in range(4)]
    assert [r[0] for r in results] == [200, 200, 200, 429]
    _, headers, body = results[3]
    assert body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert headers["retry-after"] == "42"
    assert _chat(_client(gateway, "/v1", **{"x-team": "blue"}))[0] == 200  # a descriptor per team
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0, default_headers={"x-team": "red"})
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_token_hits_are_sent_at_stream_end(gateway: GatewayProcess, rls: FakeRateLimitService) -> None:
    """A stream of 7 tokens: 1 hit when it starts, 6 more when it ends."""
    before = len(rls.seen)
    stream = _client(gateway, "/v1", **{"x-team": "green"}).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a b"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert sum(1 for _ in stream) > 1

    def token_calls() -> list[int] | None:
        calls = [
            hits
            for s in rls.seen[before:]
            for entries, hits in zip(s.descriptors, s.hits, strict=True)
            if entries == (("tokens", "chat"),)
        ]
        return calls if len(calls) >= 2 else None

    hits = wait_until(token_calls, "the stream-end rate-limit call")
    assert hits == [None, 6]  # 1 hit when it starts (the request's default), the other 6 at its end


def test_service_down_fails_closed_with_503_in_the_clients_schema(gateway: GatewayProcess) -> None:
    status, headers, body = _chat(_client(gateway, "/down"))
    assert status == 503 and headers["retry-after"] == "1"
    assert body["code"] == "limits_unavailable"  # type: ignore[index]


def test_routes_without_the_policy_never_call_the_service(gateway: GatewayProcess, rls: FakeRateLimitService) -> None:
    before = len(rls.seen)
    assert _chat(_client(gateway, "/free"))[0] == 200
    assert len(rls.seen) == before
