"""The AKS tutorial's manifests, as written, through the real gateway: only host/port point at the fake.

Its key sits on the provider of a group (`auth.apiKey.secretRef`), the Secret made by
`kubectl create secret generic openai-api-key --from-literal=api-key=sk-...` holds a
raw key, and an AgentgatewayParameters adds the workload-identity pod label. The fake
provider must receive `Authorization: Bearer sk-...`.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess

pytestmark = pytest.mark.integration

KEY = "sk-aks-tutorial-raw-key"

# As the tutorial writes them; {port} and {upstream} are the only changes.
AKS_TUTORIAL = """\
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayParameters
metadata:
  name: agentgateway-params
  namespace: agentgateway-system
spec:
  deployment:
    spec:
      template:
        metadata:
          labels:
            azure.workload.identity/use: "true"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: agentgateway-proxy
  namespace: agentgateway-system
spec:
  gatewayClassName: agentgateway
  infrastructure:
    parametersRef:
      group: agentgateway.dev
      kind: AgentgatewayParameters
      name: agentgateway-params
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
  name: openai-api-key
  namespace: agentgateway-system
type: Opaque
data:
  api-key: {key_b64}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata:
  name: openai
  namespace: agentgateway-system
spec:
  ai:
    groups:
    - providers:
      - name: openai
        openai:
          model: gpt-4o-mini
        host: 127.0.0.1
        port: {upstream}
        auth:
          apiKey:
            secretRef:
              name: openai-api-key
              key: api-key
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: openai
  namespace: agentgateway-system
spec:
  parentRefs:
  - name: agentgateway-proxy
    namespace: agentgateway-system
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /openai
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /v1
    backendRefs:
    - name: openai
      namespace: agentgateway-system
      group: agentgateway.dev
      kind: AgentgatewayBackend
"""


def _manifest(port: int, upstream: int) -> str:
    key_b64 = base64.b64encode(KEY.encode()).decode()
    return AKS_TUTORIAL.format(port=port, upstream=upstream, key_b64=key_b64)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="openai").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    gw.write("aks.yaml", _manifest(gw.port, fake.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_provider_level_key_reaches_the_provider_as_bearer(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key="unused-by-the-gateway", max_retries=0)
    reply = client.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    [rec] = fake.requests
    assert rec.headers["authorization"] == f"Bearer {KEY}"


def test_validate_accepts_the_tutorial_with_an_info_line(gateway: GatewayProcess) -> None:
    path = gateway.manifest_dir / "aks.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")
    assert (
        f"info: {path}: AgentgatewayParameters agentgateway-system/agentgateway-params: "
        "shapes the data-plane pod in Kubernetes; ignored when llmgw runs standalone (no pod)"
    ) in result.stderr
