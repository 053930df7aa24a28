"""Limits keyed by the caller's identity (API keys with user/team metadata): a per-team USD budget
across its members' keys, streamed, and a per-user request limit; other teams and users go on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule
from tests.limits_manifests import COST_OF_A_B, PRICE_PER_MTOK

pytestmark = pytest.mark.integration
KEYS = {
    "ann": ("sk-ann-0000000001", "ann", "red"),
    "ben": ("sk-ben-0000000002", "ben", "red"),
    "cat": ("sk-cat-0000000003", "cat", "blue"),
}


def manifests(*, port: int, upstream: int) -> str:
    secret = "".join(
        f"  {name}: '{json.dumps({'key': key, 'metadata': {'user': user, 'team': team}})}'\n"
        for name, (key, user, team) in KEYS.items()
    )
    return (
        gateway_yaml(port=port)
        + http_route_yaml(route_rule("/v1", "priced"), name="chat")
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: priced, namespace: default}}
spec:
  ai:
    provider:
      openai: {{}}
      host: 127.0.0.1
      port: {upstream}
      pricing: [{{input: {PRICE_PER_MTOK}, output: {PRICE_PER_MTOK}}}]
  policies: {{auth: {{key: sk-provider}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIPolicy
metadata: {{name: governed, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  traffic:
    apiKeyAuthentication: {{mode: Strict, secretRef: {{name: team-keys}}}}
    rateLimit:
      local:
        - {{usd: 0.02, unit: Days, key: [team]}}
        - {{requests: 2, unit: Days, key: [user]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: team-keys, namespace: default}}
stringData:
{secret}"""
    )


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    fp = FakeProviderThread(name="fake").start()
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", manifests(port=gw.port, upstream=fp.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()


def _stream(gw: GatewayProcess, who: str) -> int:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS[who][0], max_retries=0)
    try:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "a b"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    except openai.RateLimitError as exc:
        assert "rate_limit_exceeded" in str(exc.body)
        return 429
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    return 200


def test_team_budget_is_shared_by_its_members_keys(gateway: GatewayProcess) -> None:
    """$0.02 a day for team red, $0.007 a stream: ann, ben, ann pass (the third crosses it), then
    both are refused (refusals take nothing from the other limits); team
    blue's cat is not affected."""
    assert [_stream(gateway, who) for who in ("ann", "ben", "ann", "ben", "ann")] == [200, 200, 200, 429, 429]
    assert _stream(gateway, "cat") == 200
    assert 3 * COST_OF_A_B > 0.02


def test_per_user_request_limit(gateway: GatewayProcess) -> None:
    """cat has 2 requests a day (one used above) and team blue's budget left for two more streams:
    the request limit refuses the third, with its own message and headers."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEYS["cat"][0], max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b"}]
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "2" and raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.headers["x-ratelimit-limit-usd"] == "0.02"
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a b"}])
    assert "2 requests per day per user" in info.value.message
