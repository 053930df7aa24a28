"""The operation allowlist and backend-fixed models, through the real gateway to the fake provider.

What the gateway does not know is answered 404 (unknown path) or 405 (known path, wrong method)
in the client's schema, and the provider records nothing: the gateway's key reaches no files,
fine-tuning, batches or admin endpoint. A request without `model` works when the backend fixes
it (an OpenAI `model`, an Azure deployment), and a fixed chat model leaves embeddings alone.

Routes: `/fixed` (OpenAI, `model` fixed, a direct route), `/plain` (OpenAI, no fixed model),
`/gemini` (Gemini, translated), `/claude` (Anthropic), `/deployment` (Azure deployment API), `/v1dep` (Azure v1 API
with `deploymentName`), and `/routed` (model routing: the router stage cannot know the backend
before the body, so the attempt stage decides).
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, ai_backend_yaml, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration
KEY = "provider-secret-must-stay-home"

ROUTED = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: routed, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /routed}}
          headers: [{{name: x-gateway-model-name, value: other-model}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: plain}}]
    - matches: [{{path: {{type: PathPrefix, value: /routed}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: fixed}}]
"""

BACKENDS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: deployment}}
spec:
  ai:
    provider:
      azureopenai: {{endpoint: my-res.openai.azure.com, deploymentName: gpt-4o-prod, apiVersion: "2024-10-21"}}
      host: 127.0.0.1
      port: {up}
  policies: {{auth: {{key: {key}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: v1dep}}
spec:
  ai:
    provider:
      azureopenai: {{endpoint: my-res.openai.azure.com, deploymentName: gpt-4o-v1}}
      host: 127.0.0.1
      port: {up}
  policies: {{auth: {{key: {key}}}}}
"""


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayProcess, FakeProviderThread]]:
    fp = FakeProviderThread(name="allow").start()
    gw = GatewayProcess(workers=2)
    rules = [
        route_rule(f"/{n}", n, rewrite=True) for n in ("fixed", "plain", "gemini", "claude", "deployment", "v1dep")
    ]
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + http_route_yaml(*rules)
        + ROUTED.format()
        + "".join(
            ai_backend_yaml(name, provider, port=fp.port, key=KEY)
            for name, provider in (
                ("fixed", "openai: {model: gpt-4o-fixed}"),
                ("plain", "openai: {}"),
                ("gemini", "gemini: {}"),
                ("claude", "anthropic: {}"),
            )
        )
        + BACKENDS.format(up=fp.port, key=KEY),
    )
    gw.start()
    yield gw, fp
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("prefix", ["fixed", "plain", "gemini", "routed"])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/chat/completions", 405),
        ("POST", "/v1/models", 405),
        ("POST", "/v1/files", 404),
        ("POST", "/v1/fine_tuning/jobs", 404),
        ("GET", "/v1/files", 404),
        ("POST", "/anything", 404),
        ("DELETE", "/v1/models/gpt-4o", 404),
    ],
)  # fmt: skip
def test_unknown_operations_never_reach_the_provider(
    setup: tuple[GatewayProcess, FakeProviderThread], prefix: str, method: str, path: str, status: int
) -> None:
    gw, fp = setup
    fp.clear()
    resp = httpx.request(method, f"{gw.url}/{prefix}{path}", json=CHAT, timeout=10)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] in ("unknown_operation", "method_not_allowed")
    assert set(err) == {"message", "type", "code", "param"}
    assert fp.requests == []


def test_openai_sdk_sees_not_found_and_nothing_is_sent(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    client = openai.OpenAI(base_url=f"{gw.url}/plain/v1", api_key="client-key", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.files.list()
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert "gpt-4o-fixed" in [m.id for m in client.models.list()]  # GET /models: answered by the gateway
    assert fp.requests == []


def test_anthropic_schema_on_messages_paths(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    for method, path, status in (("GET", "/v1/messages", 405), ("POST", "/v1/messages/batches", 404)):
        resp = httpx.request(method, f"{gw.url}/plain{path}", json={"model": "m"}, timeout=10)
        assert resp.status_code == status
        assert resp.json()["type"] == "error"
    client = anthropic.Anthropic(base_url=f"{gw.url}/plain", api_key="client-key", max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.list()
    assert fp.requests == []


def test_operation_the_provider_kind_cannot_serve_is_a_clear_400(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, fp = setup
    fp.clear()
    resp = httpx.post(f"{gw.url}/gemini/v1/responses", json={"model": "gemini-2.0-flash", "input": "x"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "unsupported_operation"
    assert fp.requests == []


@pytest.mark.parametrize("body", [{}, {"model": ""}], ids=["absent", "empty"])
@pytest.mark.parametrize(
    ("prefix", "sent_model", "path"),
    [
        ("fixed", "gpt-4o-fixed", "/v1/chat/completions"),
        ("routed", "gpt-4o-fixed", "/v1/chat/completions"),
        ("deployment", None, "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"),
        ("v1dep", "gpt-4o-v1", "/openai/v1/chat/completions"),
    ],
)
def test_model_may_be_absent_when_the_backend_fixes_it(
    setup: tuple[GatewayProcess, FakeProviderThread], body: dict, prefix: str, sent_model: str | None, path: str
) -> None:
    """The Foundry tutorial's test request: `{"messages": [...]}` to a backend that names its model."""
    gw, fp = setup
    fp.clear()
    resp = httpx.post(
        f"{gw.url}/{prefix}/v1/chat/completions",
        json={**body, "messages": [{"role": "user", "content": "no model"}]},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    [rec] = fp.requests
    assert rec.path == path
    if sent_model is not None:
        assert rec.json["model"] == sent_model


@pytest.mark.parametrize("prefix", ["plain", "gemini"])
def test_model_still_required_when_the_backend_fixes_none(
    setup: tuple[GatewayProcess, FakeProviderThread], prefix: str
) -> None:
    gw, fp = setup
    fp.clear()
    for body in ({"messages": [{"role": "user", "content": "x"}]}, {"model": "", "messages": []}):
        resp = httpx.post(f"{gw.url}/{prefix}/v1/chat/completions", json=body, timeout=10)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "missing_model"
    assert fp.requests == []


def test_fixed_chat_model_leaves_embeddings_alone(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    client = openai.OpenAI(base_url=f"{gw.url}/fixed/v1", api_key="client-key", max_retries=0)
    emb = client.embeddings.create(model="text-embedding-3-small", input="e")
    assert emb.data
    chat = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "c"}])
    assert chat.choices
    emb_rec, chat_rec = fp.requests
    assert emb_rec.json["model"] == "text-embedding-3-small"
    assert chat_rec.json["model"] == "gpt-4o-fixed"
    assert emb_rec.headers["authorization"] == f"Bearer {KEY}"


def test_access_log_metrics_carry_the_backends_model(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    resp = httpx.post(
        f"{gw.url}/deployment/v1/chat/completions", json={"messages": [{"role": "user", "content": "m"}]}, timeout=10
    )
    assert resp.status_code == 200
    assert 'gen_ai_request_model="gpt-4o-prod"' in gw.metrics()


def test_anthropic_sdk_count_tokens(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    """Anthropic's token counting is an operation of Anthropic backends (and only of them)."""
    gw, fp = setup
    fp.clear()
    client = anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key="client-key", max_retries=0)
    counted = client.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens > 0
    [rec] = fp.requests
    assert rec.path == "/v1/messages/count_tokens"
    assert rec.headers["x-api-key"] == KEY
    fp.clear()
    other = anthropic.Anthropic(base_url=f"{gw.url}/gemini", api_key="client-key", max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        other.messages.count_tokens(model="gemini-x", messages=[{"role": "user", "content": "x"}])
    assert fp.requests == []
