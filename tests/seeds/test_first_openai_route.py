"""Seed: "Your First AI Route: Connecting to OpenAI with AgentGateway", its manifests as printed.

The tutorial pairs an AI backend (`openai-backend`, model `gpt-4o-mini`, key from
the Secret `openai-secret` holding `Authorization: Bearer sk-...`) with a static
backend (`openai-models-backend`, `spec.static` api.openai.com:443) for the
metadata call `GET /openai/models`, and routes `openai-chat` and `openai-models`
on a Gateway of class `agentgateway`. Changes from the page: the listener port,
`host`/`port` of both backends pointed at the fake provider, and the Secret
written as YAML (what `kubectl create secret generic --from-literal` makes).

The page lists embeddings among what it tests, but its routes have no
embeddings rule: `/openai/embeddings` matches no route, so the gateway answers
404 in OpenAI's schema (as agentgateway would, with no route).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess

pytestmark = pytest.mark.integration

KEY = "sk-first-route-tutorial-key"

TUTORIAL = """\
apiVersion: v1
kind: Secret
metadata:
  name: openai-secret
  namespace: agentgateway-system
data:
  Authorization: {auth_b64}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: agentgateway-proxy
  namespace: agentgateway-system
spec:
  gatewayClassName: agentgateway
  listeners:
  - protocol: HTTP
    port: {port}
    name: http
    allowedRoutes:
      namespaces:
        from: All
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai-backend
  namespace: agentgateway-system
spec:
  ai:
    provider:
      openai:
        model: gpt-4o-mini
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      secretRef:
        name: openai-secret
    http:
      requestTimeout: 120s
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai-models-backend
  namespace: agentgateway-system
spec:
  policies:
    auth:
      secretRef:
        name: openai-secret
    http:
      requestTimeout: 30s
  static:
    host: 127.0.0.1
    port: {upstream}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: openai-chat
  namespace: agentgateway-system
spec:
  parentRefs:
  - name: agentgateway-proxy
    namespace: agentgateway-system
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /openai/chat/completions
    backendRefs:
    - name: openai-backend
      group: agentgateway.dev
      kind: AgentgatewayBackend
    timeouts:
      request: "120s"
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /v1/chat/completions
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: openai-models
  namespace: agentgateway-system
spec:
  parentRefs:
  - name: agentgateway-proxy
    namespace: agentgateway-system
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /openai/models
    backendRefs:
    - name: openai-models-backend
      group: agentgateway.dev
      kind: AgentgatewayBackend
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /v1/models
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
    gw.write("first-route.yaml", TUTORIAL.format(port=gw.port, upstream=fake.port, auth_b64=auth_b64))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/openai", api_key="unused-by-the-gateway", max_retries=0)


def test_chat_completions(client: openai.OpenAI, fake: FakeProviderThread) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What are the key benefits of using an AI Gateway?"}],
        max_tokens=100,
    )
    assert reply.choices[0].message.content and reply.usage is not None
    rec = fake.requests[-1]
    assert (rec.path, rec.headers["authorization"]) == ("/v1/chat/completions", f"Bearer {KEY}")


def test_different_model_is_overridden_by_the_backend(client: openai.OpenAI, fake: FakeProviderThread) -> None:
    """ "Test Different Models" asks for gpt-4o; the backend fixes gpt-4o-mini, which wins."""
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Explain AgentGateway in one sentence."}], max_tokens=50
    )
    assert reply.model == "gpt-4o-mini"
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"


def test_models_list_through_the_static_backend(client: openai.OpenAI, fake: FakeProviderThread) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["fake-model"]  # the provider's own list, passed through unchanged (not the gateway's)
    rec = fake.requests[-1]
    assert (rec.method, rec.path) == ("GET", "/v1/models")
    assert rec.headers["authorization"] == f"Bearer {KEY}"  # injected by Envoy from the Secret


def test_embeddings_have_no_route_in_the_tutorial(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert isinstance(err.value.body, dict) and err.value.body.get("message")  # OpenAI's error schema


def test_the_key_never_reaches_envoy_config(gateway: GatewayProcess) -> None:
    assert KEY not in gateway.config_dump()
