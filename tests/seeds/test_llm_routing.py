"""Seed: the agentgateway workshop's LLM routing lab, path per model ("004a-path-per-model-routing-example").

Three `AgentgatewayBackend`s, one per model (`openai.model` overrides whatever the
client asks for, and the client may name none), and one HTTPRoute `openai` with a
PathPrefix per model. The manifests are as printed; the changes: `host`/`port` of
each backend pointed at the fake provider, the Secret `openai-secret` written as
YAML, and the Gateway `agentgateway` (made by the workshop's setup lab) written
here with a free port.

The lab's curl posts a chat body to the bare prefix (`/openai/gpt-4o`). agentgateway
treats any path of an AI backend as chat completions unless `policies.ai.routes`
says otherwise; llmgw's operation allowlist refuses a path that names no operation
(404 in OpenAI's schema, no provider contacted), so the official SDK, whose
`base_url` is the prefix, reaches `<prefix>/chat/completions`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess

pytestmark = pytest.mark.integration

KEY = "sk-llm-routing-lab"
MODELS = ("gpt-3.5-turbo", "gpt-4o-mini", "gpt-4o")

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: agentgateway
  namespace: enterprise-agentgateway
spec:
  gatewayClassName: enterprise-agentgateway
  listeners:
  - protocol: HTTP
    port: {port}
    name: http
    allowedRoutes:
      namespaces:
        from: All
---
apiVersion: v1
kind: Secret
metadata:
  name: openai-secret
  namespace: enterprise-agentgateway
data:
  Authorization: {auth_b64}
"""

LAB = """\
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai-gpt-3.5-turbo
  namespace: enterprise-agentgateway
spec:
  ai:
    provider:
      openai:
        #--- Uncomment to configure model override ---
        model: "gpt-3.5-turbo"
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      secretRef:
        name: openai-secret
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai-gpt-4o-mini
  namespace: enterprise-agentgateway
spec:
  ai:
    provider:
      openai:
        #--- Uncomment to configure model override ---
        model: "gpt-4o-mini"
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      secretRef:
        name: openai-secret
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai-gpt-4o
  namespace: enterprise-agentgateway
spec:
  ai:
    provider:
      openai:
        #--- Uncomment to configure model override ---
        model: "gpt-4o"
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      secretRef:
        name: openai-secret
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: openai
  namespace: enterprise-agentgateway
spec:
  parentRefs:
    - name: agentgateway
      namespace: enterprise-agentgateway
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /openai/gpt-3.5-turbo
      backendRefs:
        - name: openai-gpt-3.5-turbo
          group: agentgateway.dev
          kind: AgentgatewayBackend
      timeouts:
        request: "120s"
    - matches:
        - path:
            type: PathPrefix
            value: /openai/gpt-4o-mini
      backendRefs:
        - name: openai-gpt-4o-mini
          group: agentgateway.dev
          kind: AgentgatewayBackend
      timeouts:
        request: "120s"
    - matches:
        - path:
            type: PathPrefix
            value: /openai/gpt-4o
      backendRefs:
        - name: openai-gpt-4o
          group: agentgateway.dev
          kind: AgentgatewayBackend
      timeouts:
        request: "120s"
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="openai").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    auth_b64 = base64.b64encode(f"Bearer {KEY}".encode()).decode()
    gw.write("lab.yaml", GATEWAY.format(port=gw.port, auth_b64=auth_b64) + LAB.format(upstream=fake.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.mark.parametrize("model", MODELS)
def test_each_path_reaches_its_model_without_a_model_in_the_body(
    gateway: GatewayProcess, fake: FakeProviderThread, model: str
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/openai/{model}", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        messages=[{"role": "user", "content": "Whats your favorite poem?"}],
        model="",  # the lab's body names no model; the SDK requires the argument, the backend fixes it
    )
    assert raw.parse().model == model
    rec = fake.requests[-1]
    assert (rec.path, rec.json["model"], rec.headers["authorization"]) == (
        "/v1/chat/completions",
        model,
        f"Bearer {KEY}",
    )


def test_a_model_in_the_body_is_overridden_by_the_path(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/openai/gpt-4o-mini", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "gpt-4o-mini"


def test_the_lab_curl_on_the_bare_prefix_is_refused_before_any_provider(
    gateway: GatewayProcess, fake: FakeProviderThread
) -> None:
    before = len(fake.requests)
    reply = httpx.post(
        f"{gateway.url}/openai/gpt-4o",
        json={"messages": [{"role": "user", "content": "Whats your favorite poem?"}]},
        timeout=10,
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "unknown_operation"
    assert len(fake.requests) == before
