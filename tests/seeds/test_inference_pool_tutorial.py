"""The inference-gateway tutorial's manifests, as printed, through the real gateway and the controller.

The tutorials (Application Gateway for Containers' "Configure the inference gateway", the
Gateway API Inference Extension's getting-started guide) apply GIE's own manifests; these are
GIE's as printed (the Azure page's own YAML was not available to copy: only its prose was):

- the Gateway of `config/manifests/gateway/kgateway/gateway.yaml` (gatewayClassName as printed);
- the `inferencepool` Helm chart for release `vllm-qwen3-32b` as `helm template` renders it
  (`templates/inferencepool.yaml`, `epp-service.yaml`, `httproute.yaml`; chart labels included):
  an InferencePool v1 with `endpointPickerRef` to the `vllm-qwen3-32b-epp` Service, and an
  HTTPRoute on `/` with `timeouts.request: 300s`;
- `config/manifests/inferenceobjective.yaml` (v1alpha2, `priority` 1, 2, 2, selected by the
  `x-gateway-inference-objective` header);
- the model server Deployment: here its pods, as `v1 Pod` objects with `status.podIP`
  (docs/inference-pools.md), each a simulated vLLM (fakeprovider/model_server.py).

Only hosts, ports and IPs change: the listener port, the pool's target port, the EPP Service's
port and a `clusterIP` for it (standalone mode has no Service controller). The EPP behind that
Service is `llmgw epp`, given the objectives of the manifest. The EPP's own Deployment, RBAC and
ConfigMap are the EPP's business (the tutorial's image), not a Gateway's: they are left out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from fakeprovider.model_server import ModelServerThread, SimConfig
from tests.harness import REPO, GatewayProcess, free_port, wait_until
from tests.k8s import manifests as m
from tests.k8s.apiserver import ApiServer
from tests.k8s.conftest import apiserver  # noqa: F401 (fixture)
from tests.k8s.test_controller import Running

pytestmark = pytest.mark.integration

PODS = ("127.0.0.2", "127.0.0.3")
CAPACITY = 5  # sequences per simulated replica; 4 running = 80 % KV cache: saturated, one slot left
MODEL = "Qwen/Qwen3-32B"

# As printed; {port}, {target_port}, {epp_port} and the Service's clusterIP are the only changes.
TUTORIAL = """\
# Requires Kgateway 2.0.0 or greater.
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: inference-gateway
spec:
  gatewayClassName: kgateway
  listeners:
  - name: http
    port: {port}
    protocol: HTTP
    allowedRoutes:
      kinds:
      - kind: HTTPRoute
      namespaces:
        from: All
---
# Source: inferencepool/templates/epp-service.yaml
apiVersion: v1
kind: Service
metadata:
  name: vllm-qwen3-32b-epp
  namespace: default
  labels:
    app.kubernetes.io/name: vllm-qwen3-32b-epp
    app.kubernetes.io/version: "v0"
spec:
  clusterIP: 127.0.0.1
  selector:
    inferencepool: vllm-qwen3-32b-epp
  ports:
    - name: grpc-ext-proc
      protocol: TCP
      port: {epp_port}
      targetPort: {epp_port}
      appProtocol: http2
    - name: http-metrics
      protocol: TCP
      port: 9090
      targetPort: 9090
  type: ClusterIP
---
# Source: inferencepool/templates/httproute.yaml
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: vllm-qwen3-32b
  namespace: default
  labels:
    app.kubernetes.io/name: vllm-qwen3-32b-epp
    app.kubernetes.io/version: "v0"
spec:
  parentRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: inference-gateway
  rules:
  - backendRefs:
    - group: inference.networking.k8s.io
      kind: InferencePool
      name: vllm-qwen3-32b
    matches:
    - path:
        type: PathPrefix
        value: /
    timeouts:
      request: 300s
---
# Source: inferencepool/templates/inferencepool.yaml
apiVersion: "inference.networking.k8s.io/v1"
kind: InferencePool
metadata:
  name: vllm-qwen3-32b
  namespace: default
  labels:
    app.kubernetes.io/name: vllm-qwen3-32b-epp
    app.kubernetes.io/version: "v0"
spec:
  targetPorts:
      - number: {target_port}
  selector:
    matchLabels:
      app: "vllm-qwen3-32b"
  endpointPickerRef:
    name: vllm-qwen3-32b-epp
    port:
      number: {epp_port}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: small-segment-lora
spec:
  priority: 1
  poolRef:
    group: inference.networking.k8s.io
    name: vllm-qwen3-32b
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: base-model
spec:
  priority: 2
  poolRef:
    group: inference.networking.k8s.io
    name: vllm-qwen3-32b
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: base-model-cpu
spec:
  priority: 2
  poolRef:
    group: inference.networking.k8s.io
    name: vllm-qwen3-32b
"""

# The model server Deployment's pods, as Kubernetes would report them (its template's labels).
POD = """\
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-qwen3-32b-{i}
  namespace: default
  labels:
    app: vllm-qwen3-32b
status:
  podIP: {ip}
  conditions:
  - type: Ready
    status: "True"
"""

# What the EPP is told of the objectives (it reads no manifests): the manifest's, name=priority.
OBJECTIVES = ("small-segment-lora=1", "base-model=2", "base-model-cpu=2")


def tutorial(*, port: int, target_port: int, epp_port: int) -> str:
    pods = "".join(POD.format(i=i, ip=ip) for i, ip in enumerate(PODS))
    return TUTORIAL.format(port=port, target_port=target_port, epp_port=epp_port) + pods


class Stack:
    def __init__(self) -> None:
        self.target_port = free_port()
        config = SimConfig(capacity=CAPACITY, prefill_ms_per_kchar=1.0, decode_ms_per_token=2.0)
        self.pods = {
            ip: ModelServerThread(host=ip, port=self.target_port, name=f"pod-{ip}", config=config).start()
            for ip in PODS
        }
        self.epp_port = free_port()
        self.epp = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controlplane.cli",
                "epp",
                "--listen",
                f"127.0.0.1:{self.epp_port}",
                "--pool",
                "default/vllm-qwen3-32b",
                *(arg for objective in OBJECTIVES for arg in ("--objective", objective)),
            ],
            cwd=REPO,
            env={**os.environ, "LLMGW_PICKER_QUEUE_SECONDS": "0.3"},
        )
        self.gw = GatewayProcess(workers=1)
        self.gw.write(
            "tutorial.yaml", tutorial(port=self.gw.port, target_port=self.target_port, epp_port=self.epp_port)
        )
        self.gw.start()
        self.holders: list[tuple[httpx.Client, Any, Iterator[bytes]]] = []

    def served(self) -> dict[str, int]:
        return {ip: p.server.served for ip, p in self.pods.items()}

    def hold(self, ip: str, n: int) -> None:
        """Occupy `n` sequences of a replica with streams that run until `release` (other GPU work)."""
        for _ in range(n):
            client = httpx.Client(timeout=30)
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hold"}], "stream": True}
            stream = client.stream(
                "POST", f"http://{ip}:{self.target_port}/v1/chat/completions", json={**body, "max_tokens": 10**6}
            )
            chunks = stream.__enter__().iter_raw()
            next(chunks)  # admitted: it runs (the iterator is kept: closing it would end the stream)
            self.holders.append((client, stream, chunks))

    def release(self) -> None:
        for client, stream, _ in self.holders:
            stream.__exit__(None, None, None)
            client.close()
        self.holders.clear()
        wait_until(lambda: all(p.server.running == 0 for p in self.pods.values()), "the replicas idle again")

    def scraped_after_now(self) -> None:
        """Wait until the EPP scraped every replica twice more (a scrape that began after the change)."""
        before = {ip: sum(p.server.scrapes.values()) for ip, p in self.pods.items()}
        wait_until(
            lambda: all(sum(p.server.scrapes.values()) >= before[ip] + 2 for ip, p in self.pods.items()),
            "the EPP scraped every replica",
        )

    def close(self) -> None:
        self.release()
        self.gw.stop()
        self.gw.cleanup()
        self.epp.terminate()
        assert self.epp.wait(20) == 0
        for p in self.pods.values():
            p.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _client(stack: Stack, objective: str | None = None, **headers: str) -> openai.OpenAI:
    if objective:
        headers["x-gateway-inference-objective"] = objective
    return openai.OpenAI(base_url=stack.gw.url + "/v1", api_key="unused", max_retries=0, default_headers=headers)


def _ask(stack: Stack, objective: str | None = None, **headers: str) -> str:
    resp = _client(stack, objective, **headers).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write as if you were a critic: San Francisco"}]
    )
    assert resp.model == MODEL
    return resp.choices[0].message.content or ""


def test_validate_reports_what_llmgw_does_not_act_on(tmp_path: Path) -> None:
    """`llmgw validate` on the tutorial: every field it does not act on is named (file, object, field)."""
    path = tmp_path / "tutorial.yaml"
    path.write_text(tutorial(port=8080, target_port=8000, epp_port=9002))
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", "-f", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(out.stdout + out.stderr)
    assert out.returncode == 0
    assert out.stdout.startswith("ok: 1 listener(s)")
    # Nothing is unsupported; the objectives are the pool's EPP's to act on (told so, not dropped).
    reported = {line for line in out.stderr.splitlines() if line.strip()}
    assert reported == {
        f"info: {path}: InferenceObjective default/{name}: InferencePool default/vllm-qwen3-32b has its own "
        "endpoint picker, which reads this objective (llmgw does not)"
        for name in ("base-model", "base-model-cpu", "small-segment-lora")
    }


def test_completions_reach_the_simulated_replicas(stack: Stack) -> None:
    before = stack.served()
    for _ in range(4):
        assert "tok" in _ask(stack)
    # The guide's "Try it out" request: the legacy completions API.
    done = _client(stack).completions.create(
        model=MODEL, prompt="Write as if you were a critic: San Francisco", max_tokens=100, temperature=0
    )
    assert done.model == MODEL and done.choices[0].text.startswith("tok")
    after = stack.served()
    assert sum(after.values()) - sum(before.values()) == 5
    # The route's `timeouts.request: 300s` is Envoy's route timeout.
    assert '"timeout": "300s"' in stack.gw.config_dump()


def test_objective_priority_under_saturation(stack: Stack) -> None:
    """Every replica at 80 % KV cache: the highest objective is served, lower priorities are shed (429)."""
    for ip in PODS:
        stack.hold(ip, CAPACITY - 1)
    try:
        stack.scraped_after_now()
        before = stack.served()
        for objective in (None, "small-segment-lora"):
            with pytest.raises(openai.RateLimitError) as info:
                _ask(stack, objective)
            assert info.value.response.json()["error"]["code"] == "pool_saturated"
        assert stack.served() == before
        assert "tok" in _ask(stack, "base-model")
        assert sum(stack.served().values()) == sum(before.values()) + 1
    finally:
        stack.release()


def test_spoofed_destination_endpoint_is_ignored(stack: Stack) -> None:
    """A client naming the busy replica in x-gateway-destination-endpoint is sent where the EPP says."""
    busy, idle = PODS
    stack.hold(busy, CAPACITY - 1)
    try:
        stack.scraped_after_now()
        before = stack.served()
        for _ in range(3):
            _ask(stack, **{"x-gateway-destination-endpoint": f"{busy}:{stack.target_port}"})
        after = stack.served()
        assert after[busy] == before[busy]
        assert after[idle] == before[idle] + 3
    finally:
        stack.release()


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_controller_writes_the_tutorial_status(apiserver: ApiServer) -> None:  # noqa: F811
    """The same manifests in Kubernetes mode (a GatewayClass for the printed class name): status is written."""
    objs = _objects(tutorial(port=80, target_port=8000, epp_port=9002))
    for obj in objs:
        if obj["kind"] == "Pod":
            obj["spec"] = {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}
    for obj in [m.gatewayclass("kgateway"), *objs]:
        apiserver.apply(obj)
    ctl = Running(apiserver)
    try:

        def pool_condition(ctype: str) -> tuple[str, str] | None:
            return m.condition(apiserver.get("InferencePool", "vllm-qwen3-32b"), ctype, "parents", 0)

        wait_until(lambda: pool_condition("Accepted") == ("True", "Accepted"), "pool Accepted")
        assert pool_condition("ResolvedRefs") == ("True", "ResolvedRefs")
        parent = apiserver.get("InferencePool", "vllm-qwen3-32b")["status"]["parents"][0]  # type: ignore[index]
        assert parent["parentRef"]["name"] == "inference-gateway"
        wait_until(
            lambda: (
                m.condition(apiserver.get("HTTPRoute", "vllm-qwen3-32b"), "Accepted", "parents", 0)
                == ("True", "Accepted")
            ),
            "route Accepted",
        )
        assert m.condition(apiserver.get("HTTPRoute", "vllm-qwen3-32b"), "ResolvedRefs", "parents", 0) == (
            "True",
            "ResolvedRefs",
        )
        wait_until(
            lambda: m.condition(apiserver.get("Gateway", "inference-gateway"), "Accepted") == ("True", "Accepted"),
            "gateway Accepted",
        )
        # The objectives are the pool's EPP's to act on and report on: llmgw writes no status for them.
        wait_until(lambda: ctl.controller.reconciles > 0, "a reconcile")
        for name in ("small-segment-lora", "base-model", "base-model-cpu"):
            assert "status" not in apiserver.get("InferenceObjective", name)  # type: ignore[operator]
        plan = ctl.controller.plan
        assert plan is not None
        pools = {p.key: p for p in plan.gateways["default/inference-gateway"].ir.pools}
        assert {f"{ip}:{port}" for ip, port in pools["default/vllm-qwen3-32b"].endpoints} == {
            f"{ip}:8000" for ip in PODS
        }
    finally:
        ctl.stop()
