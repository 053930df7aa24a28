"""Azure OpenAI and AI Foundry paths and API keys, through the real gateway to the fake provider."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration

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
  policies: {{auth: {{secretRef: {{name: azure-key, key: apiKey}}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: v1api}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies: {{auth: {{secretRef: {{name: azure-key, key: apiKey}}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: foundry-seed}}
spec:
  ai:
    provider:
      azureopenai: {{endpoint: my-foundry.services.ai.azure.com}}
      host: 127.0.0.1
      port: {up}
      path: /models/chat/completions?api-version=2024-05-01-preview
  policies: {{auth: {{key: foundry-inline-key}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: entra}}
spec:
  ai:
    provider: {{azure: {{resourceName: my-res}}, host: 127.0.0.1, port: {up}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: azure-key}}
stringData: {{apiKey: azure-secret-key}}
"""


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayProcess, FakeProviderThread]]:
    fp = FakeProviderThread(name="azure").start()
    gw = GatewayProcess(workers=2)
    for key in list(gw.env):  # no Entra ID source at all: no AZURE_* / managed-identity endpoint variables
        if key.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            del gw.env[key]
    rules = [route_rule(f"/{n}", n, rewrite=True) for n in ("deployment", "v1api", "foundry-seed", "entra")]
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + http_route_yaml(*rules) + BACKENDS.format(up=fp.port))
    gw.start()
    yield gw, fp
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()


def _chat(gw: GatewayProcess, prefix: str, **kw: object) -> str:
    client = openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key="client-key", max_retries=0)
    resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi azure"}], **kw)
    return resp.choices[0].message.content or ""


def test_deployment_api_path_and_api_key(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    assert _chat(gw, "deployment") == "Hello from azure: hi azure"
    [rec] = fp.requests
    assert rec.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert rec.headers["api-key"] == "azure-secret-key"
    assert "authorization" not in rec.headers


def test_v1_api_path(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    client = openai.OpenAI(base_url=f"{gw.url}/v1api/v1", api_key="client-key", max_retries=0)
    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from azure: s"
    assert fp.requests[-1].path == "/openai/v1/chat/completions"
    emb = client.embeddings.create(model="text-embedding-3-small", input="e")
    assert len(emb.data[0].embedding) == 8
    assert fp.requests[-1].path == "/openai/v1/embeddings"


def test_seed_style_foundry_path(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    gw, fp = setup
    fp.clear()
    assert _chat(gw, "foundry-seed") == "Hello from azure: hi azure"
    [rec] = fp.requests
    assert rec.path == "/models/chat/completions?api-version=2024-05-01-preview"
    assert rec.headers["api-key"] == "foundry-inline-key"


def test_entra_default_chain_without_any_source_is_a_clear_5xx(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    """An `azure` provider with no auth uses the default chain (environment, workload identity, managed
    identity). With none available (no AZURE_* variables, no managed-identity endpoint; the IMDS probe
    gives up fast off Azure) the client gets a 502 naming the chain, and the provider sees nothing."""
    gw, fp = setup
    fp.clear()
    chain = "Azure default credential chain (environment, workload identity, managed identity) failed"
    for _ in range(3):  # every worker answers the same way, at once once it has tried
        resp = httpx.post(
            f"{gw.url}/entra/v1/chat/completions",
            timeout=10,
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        )
        assert resp.status_code == 502
        err = resp.json()["error"]
        assert err["code"] == "credential_error"
        assert chain in err["message"]
        assert "ManagedIdentityCredential" in err["message"]
    assert fp.requests == []


def test_anthropic_client_on_azure_deployment(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    import anthropic

    gw, fp = setup
    fp.clear()
    client = anthropic.Anthropic(base_url=f"{gw.url}/deployment", api_key="client-key", max_retries=0)
    msg = client.messages.create(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hi az"}])
    assert msg.content[0].text == "Hello from azure: hi az"  # type: ignore[union-attr]
    [rec] = fp.requests
    assert rec.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert rec.headers["api-key"] == "azure-secret-key"
