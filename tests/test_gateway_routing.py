"""Routing through the real gateway: model from the body, weights, matches and filters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml

pytestmark = pytest.mark.integration

MANIFESTS = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: models}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /v1}}
          headers: [{{name: x-gateway-model-name, value: model-b}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: b}}]
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {{set: [{{name: x-tenant, value: t1}}], remove: [x-drop-me]}}
        - type: ResponseHeaderModifier
          responseHeaderModifier: {{add: [{{name: x-served-by, value: llmgw}}]}}
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: a}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /split}}
          headers: [{{name: x-team, value: blue}}]
        - path: {{type: PathPrefix, value: /split}}
          queryParams: [{{name: tier, value: gold}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: b}}]
    - matches: [{{path: {{type: PathPrefix, value: /split}}}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
      backendRefs:
        - {{group: llmgw.dev, kind: AIBackend, name: a, weight: 90}}
        - {{group: llmgw.dev, kind: AIBackend, name: b, weight: 10}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: a}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {a}}}}}
  policies: {{auth: {{key: sk-a}}}}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: b}}
spec:
  ai: {{provider: {{openai: {{model: provider-b-model}}, host: 127.0.0.1, port: {b}}}}}
  policies: {{auth: {{key: sk-b, location: {{header: {{name: api-key}}}}}}}}
"""


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeProviderThread, FakeProviderThread]]:
    a = FakeProviderThread(name="A").start()
    b = FakeProviderThread(name="B").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def gateway(providers: tuple[FakeProviderThread, FakeProviderThread]) -> Iterator[GatewayProcess]:
    a, b = providers
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + MANIFESTS.format(a=a.port, b=b.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _chat(gw: GatewayProcess, prefix: str, model: str, **kw: object) -> str:
    client = openai.OpenAI(base_url=gw.url + prefix, api_key="client", max_retries=0)
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kw)
    return resp.choices[0].message.content or ""


def test_body_model_selects_backend(gateway: GatewayProcess, providers: tuple[FakeProviderThread, ...]) -> None:
    a, b = providers
    a.clear()
    b.clear()
    assert _chat(gateway, "/v1", "model-a").startswith("Hello from A")
    assert _chat(gateway, "/v1", "model-b").startswith("Hello from B")
    [rec_b] = b.requests
    # the AgentgatewayBackend alias works, with its model override and api-key header
    assert rec_b.json["model"] == "provider-b-model"
    assert rec_b.headers["api-key"] == "sk-b"
    assert "authorization" not in rec_b.headers
    assert "x-gateway-model-name" not in rec_b.headers
    [rec_a] = a.requests
    assert rec_a.headers["authorization"] == "Bearer sk-a"


def test_streamed_response_keeps_provider_model(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client", max_retries=0)
    chunks = list(
        client.chat.completions.create(model="model-b", messages=[{"role": "user", "content": "s"}], stream=True)
    )
    assert {c.model for c in chunks} == {"provider-b-model"}


def test_header_modifiers(gateway: GatewayProcess, providers: tuple[FakeProviderThread, ...]) -> None:
    a, _ = providers
    a.clear()
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "h"}]},
        headers={"x-drop-me": "1", "x-tenant": "client-value"},
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["x-served-by"] == "llmgw"
    [rec] = a.requests
    assert rec.headers["x-tenant"] == "t1" and "x-drop-me" not in rec.headers


def test_header_and_query_matches_win_over_plain_prefix(gateway: GatewayProcess) -> None:
    assert _chat(gateway, "/split/v1", "m", extra_headers={"x-team": "blue"}).startswith("Hello from B")
    assert _chat(gateway, "/split/v1", "m", extra_query={"tier": "gold"}).startswith("Hello from B")


def test_weighted_split_90_10(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/split/v1", api_key="client", max_retries=0)
    counts: Counter[str] = Counter()
    for i in range(200):
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
        counts[(reply.choices[0].message.content or "")[11]] += 1
    # Binomial(200, 0.1): mean 20, sd ~4.2; 6..40 is beyond 3 sd on both sides.
    assert counts["A"] + counts["B"] == 200
    assert 6 <= counts["B"] <= 40, counts
