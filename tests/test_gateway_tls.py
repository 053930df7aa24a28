"""Upstream TLS: a self-signed OpenAI-compatible server trusted through `policies.tls`.

The CA comes from a Secret; Envoy verifies the certificate against it and
the SNI/SAN. Without the CA the same upstream is refused (503, OpenAI schema).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import openai
import pytest
import trustme

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration

ROUTE = http_route_yaml(
    route_rule("/trusted", "trusted", rewrite=True), route_rule("/untrusted", "untrusted", rewrite=True)
)
BACKENDS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: trusted}}
spec:
  ai: {{provider: {{custom: {{}}, host: localhost, port: {upstream}}}}}
  policies:
    auth: {{key: sk-tls}}
    tls: {{caCertificateRefs: [{{kind: Secret, name: upstream-ca}}]}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: untrusted}}
spec:
  ai: {{provider: {{custom: {{}}, host: localhost, port: {upstream}}}}}
  policies:
    tls: {{}}
---
apiVersion: v1
kind: Secret
metadata: {{name: upstream-ca}}
stringData:
  ca.crt: |
{ca}
"""


@pytest.fixture
def tls_provider() -> Iterator[tuple[FakeProviderThread, trustme.CA]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    fp = FakeProviderThread(name="tls", ssl_context=ctx).start()
    yield fp, ca
    fp.stop()


def test_self_signed_upstream_with_ca_from_secret(
    gateway_factory: type[GatewayProcess], tls_provider: tuple[FakeProviderThread, trustme.CA]
) -> None:
    fp, ca = tls_provider
    pem = ca.cert_pem.bytes().decode()
    gw = gateway_factory(workers=1)
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + ROUTE
        + BACKENDS.format(upstream=fp.port, ca="\n".join("    " + line for line in pem.splitlines())),
    )
    gw.start()
    client = openai.OpenAI(base_url=gw.url + "/trusted/v1", api_key="client", max_retries=0)
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "over tls"}])
    assert resp.choices[0].message.content == "Hello from tls: over tls"
    assert fp.requests[-1].headers["authorization"] == "Bearer sk-tls"
    assert fp.requests[-1].headers["host"].startswith("localhost")

    refused = httpx.post(
        gw.url + "/untrusted/v1/chat/completions",
        timeout=10,
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "upstream_unavailable"
    assert len(fp.requests) == 1
