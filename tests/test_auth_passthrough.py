"""`auth.passthrough`: the provider gets the client's own credential, where the provider expects it.

agentgateway's `passthrough` reuses the token the client presented instead of a key
the gateway holds. llmgw takes the client's `Authorization: Bearer` token (or its
`x-api-key`/`api-key`/`x-goog-api-key`) and writes it at the provider's header:
`Authorization: Bearer` for OpenAI, `x-api-key` for Anthropic. Without a client
credential nothing is sent, and the provider answers its own 401.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="passthrough").start()
    yield fp
    fp.stop()


def _backend(name: str, provider: str, port: int) -> str:
    return f"""---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      {provider}: {{}}
      host: 127.0.0.1
      port: {port}
  policies:
    auth:
      passthrough: {{}}
"""


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    route = http_route_yaml(
        route_rule("/oai", "oai", rewrite=True, kind="AgentgatewayBackend"),
        route_rule("/claude", "claude", rewrite=True, kind="AgentgatewayBackend"),
        route_rule("/static", "static", rewrite=True, kind="AgentgatewayBackend"),
    )
    static = f"""---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: static, namespace: default}}
spec:
  static: {{host: 127.0.0.1, port: {fake.port}}}
  policies: {{auth: {{passthrough: {{}}}}}}
"""
    gw.write(
        "p.yaml",
        gateway_yaml(port=gw.port)
        + route
        + _backend("oai", "openai", fake.port)
        + _backend("claude", "anthropic", fake.port)
        + static,
    )
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_openai_provider_gets_the_client_bearer_token(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-the-clients-own", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-the-clients-own"


def test_anthropic_provider_gets_it_as_x_api_key(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/claude/v1", api_key="sk-ant-clients-own", max_retries=0)
    client.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    rec = fake.requests[-1]
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == "sk-ant-clients-own"
    assert "authorization" not in rec.headers
    native = anthropic.Anthropic(base_url=gateway.url + "/claude", api_key="sk-ant-native", max_retries=0)
    native.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].headers["x-api-key"] == "sk-ant-native"


def test_no_client_credential_sends_none(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    reply = httpx.post(
        gateway.url + "/oai/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert reply.status_code == 200
    assert "authorization" not in fake.requests[-1].headers


def test_static_backend_passes_the_client_header_through(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/static/v1", api_key="sk-static-client", max_retries=0)
    client.models.list()
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-static-client"
