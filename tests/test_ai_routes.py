"""`policies.ai.routes` through the real gateway: raw passthrough opt-in, and an operation per path suffix.

A backend that maps a path suffix to `Passthrough` lets that path past the operation
allowlist: it goes upstream as is, with the backend's credential, untranslated.
Paths it does not map are still refused (404, no provider contacted). A suffix
mapped to an operation (agentgateway's `Completions` for a bare path) is processed
as that operation and sent to the provider's own path for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml

pytestmark = pytest.mark.integration


def _backend(name: str, provider: str, port: int, routes: str) -> str:
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
    auth: {{key: sk-{name}-key}}
    ai:
      routes: {routes}
"""


ROUTES = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /files}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: files, group: agentgateway.dev, kind: AgentgatewayBackend}]
  - matches: [{path: {type: PathPrefix, value: /v1/files}}]
    backendRefs: [{name: files, group: agentgateway.dev, kind: AgentgatewayBackend}]
  - matches: [{path: {type: PathPrefix, value: /claude}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: claude, group: agentgateway.dev, kind: AgentgatewayBackend}]
  - matches: [{path: {type: PathPrefix, value: /openai/gpt-4o}}]
    backendRefs: [{name: bare, group: agentgateway.dev, kind: AgentgatewayBackend}]
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="routes").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    gw.write(
        "routes.yaml",
        gateway_yaml(port=gw.port)
        + ROUTES
        + _backend("files", "openai", fake.port, '{"/v1/files": Passthrough}')
        + _backend("claude", "anthropic", fake.port, '{"*": Passthrough, "/v1/messages": Messages}')
        + _backend("bare", "openai", fake.port, '{"/openai/gpt-4o": Completions}'),
    )
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_a_passthrough_path_reaches_the_provider_as_is(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    reply = httpx.get(gateway.url + "/files/v1/files?purpose=batch", headers={"authorization": "Bearer client"})
    assert reply.status_code == 404  # the fake's own answer: it has no files API
    assert "unknown_operation" not in reply.text
    rec = fake.requests[-1]
    assert (rec.method, rec.path) == ("GET", "/v1/files?purpose=batch")
    assert rec.headers["authorization"] == "Bearer sk-files-key"  # the backend's key, not the client's


def test_a_passthrough_upload_on_a_direct_route_carries_the_key(
    gateway: GatewayProcess, fake: FakeProviderThread
) -> None:
    """A multipart body (OpenAI's file upload) is no JSON: the backend's key is still injected, also on a
    direct route (no rewrite: the router stage does the provider work itself)."""
    reply = httpx.post(gateway.url + "/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"})
    assert reply.status_code == 404  # the fake has no files API
    rec = fake.requests[-1]
    assert (rec.method, rec.path, rec.headers["authorization"]) == ("POST", "/v1/files", "Bearer sk-files-key")
    assert "a.jsonl" in rec.body


def test_paths_the_map_does_not_name_are_still_refused(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    before = len(fake.requests)
    reply = httpx.get(gateway.url + "/files/v1/batches")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_operation"
    assert len(fake.requests) == before


def test_operations_keep_their_processing_beside_passthrough(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/files/v1", api_key="unused", max_retries=0)
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
    assert fake.requests[-1].path == "/v1/chat/completions"


def test_wildcard_passthrough_on_a_translated_provider(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    """Anthropic (attempt stage): `*` passes any other path untranslated with its key; Messages still translate."""
    reply = httpx.post(gateway.url + "/claude/v1/anything", content=b"raw bytes")
    rec = fake.requests[-1]
    assert (rec.path, rec.body, rec.headers["x-api-key"]) == ("/v1/anything", "raw bytes", "sk-claude-key")
    assert reply.status_code == 404
    # /v1/chat/completions is no Messages path here: `*` sends it to the provider as is, untranslated.
    httpx.post(gateway.url + "/claude/v1/chat/completions", json={"model": "m", "messages": []})
    rec = fake.requests[-1]
    assert (rec.path, rec.json) == ("/v1/chat/completions", {"model": "m", "messages": []})
    client = anthropic.Anthropic(base_url=gateway.url + "/claude", api_key="unused", max_retries=0)
    message = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert message.type == "message"  # Messages: processed as the operation
    assert fake.requests[-1].path == "/v1/messages"


def test_a_bare_path_mapped_to_completions_is_a_chat_request(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    reply = httpx.post(
        gateway.url + "/openai/gpt-4o", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["object"] == "chat.completion"
    rec = fake.requests[-1]
    assert (rec.path, rec.headers["authorization"]) == ("/v1/chat/completions", "Bearer sk-bare-key")
