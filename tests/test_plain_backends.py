"""Plain backends through the real gateway: a static AgentgatewayBackend and Service refs, Envoy only.

The static backend's key (from a Secret) is injected by Envoy's credential_injector
from an SDS secret: the provider receives it, the client's own credential is
replaced, and neither Envoy's config dump nor its SDS section shows it. Nothing of
the extproc runs on these routes (no operation allowlist, no model header, the
router stage's metrics stay empty); a Service of type ExternalName points a
Service ref at the fake provider.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml

pytestmark = pytest.mark.integration
KEY = "sk-static-backend-secret"


def manifests(*, port: int, upstream: int) -> str:
    return (
        gateway_yaml(port=port)
        + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: models-key, namespace: default}}
stringData: {{Authorization: Bearer {KEY}}}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: models, namespace: default}}
spec:
  static: {{host: 127.0.0.1, port: {upstream}}}
  policies:
    auth:
      secretRef: {{name: models-key}}
---
apiVersion: v1
kind: Service
metadata: {{name: fake, namespace: default}}
spec: {{type: ExternalName, externalName: 127.0.0.1}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: plain, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /static}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}
    backendRefs: [{{name: models, group: agentgateway.dev, kind: AgentgatewayBackend}}]
  - matches: [{{path: {{type: PathPrefix, value: /svc}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}
    backendRefs: [{{name: fake, port: {upstream}}}]
"""
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="plain").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    gw.write("plain.yaml", manifests(port=gw.port, upstream=fake.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_static_backend_gets_the_secret_key_from_envoy(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/static", api_key="sk-client-own", max_retries=0)
    models = client.models.list()
    assert [m.id for m in models]  # the provider's own list, proxied as is
    rec = fake.requests[-1]
    assert (rec.method, rec.path) == ("GET", "/v1/models")
    assert rec.headers["authorization"] == f"Bearer {KEY}"  # the client's key replaced


def test_static_backend_is_a_plain_proxy(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    """No allowlist and no extproc: any path and method go through, the body untouched."""
    reply = httpx.post(gateway.url + "/static/anything", content=b"not json", timeout=10)
    assert reply.status_code == 404  # the fake's own 404, not the gateway's unknown_operation
    assert "unknown_operation" not in reply.text
    rec = fake.requests[-1]
    assert (rec.path, rec.body) == ("/v1/anything", "not json")
    assert "x-gateway-model-name" not in rec.headers
    assert "llmgw_gen_ai_server_request_duration_seconds_count" not in gateway.metrics()


def test_service_ref_resolves_through_external_name(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/svc", api_key="sk-client-own", max_retries=0)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    rec = fake.requests[-1]
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer sk-client-own"  # no credential policy: the client's


def test_the_key_is_not_in_envoy_config_dump(gateway: GatewayProcess) -> None:
    dump = gateway.config_dump()
    assert "llmgw-credential/default/models" in dump  # the SDS secret is there, by name
    assert KEY not in dump
    secrets = gateway.admin("/config_dump?resource=dynamic_active_secrets").text
    assert "llmgw-credential/default/models" in secrets and KEY not in secrets
    assert "[redacted]" in secrets  # Envoy's own redaction of the generic secret's value
