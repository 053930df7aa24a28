"""llmgw's own endpoint picker through the real gateway (standalone: inside the router stage).

An InferencePool without `endpointPickerRef`: the router stage scrapes the model
servers' vLLM gauges (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`)
and names the least-loaded one in `x-gateway-destination-endpoint`; under
saturation an InferenceObjective's priority decides who is served and who is
shed (429 in the client's schema). The fake model servers report the load a
test sets (PUT /_fake/load), so the picks are deterministic; a test waits until
every server was scraped after the change (no timing assumption).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, free_port, gateway_yaml, wait_until

pytestmark = pytest.mark.integration

PODS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

MANIFESTS = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: llm, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /v1}}
          headers: [{{name: x-gateway-model-name, value: qwen}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen-pool}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: qwen-pool, namespace: default}}
spec:
  selector: {{matchLabels: {{app: qwen}}}}
  targetPorts: [{{number: {port}}}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {{name: interactive, namespace: default}}
spec:
  priority: 10
  poolRef: {{group: inference.networking.k8s.io, name: qwen-pool}}
"""

POD = """---
apiVersion: v1
kind: Pod
metadata: {{name: qwen-{i}, namespace: default, labels: {{app: qwen, inference.networking.k8s.io/engine-type: vllm}}}}
status: {{podIP: {ip}, conditions: [{{type: Ready, status: "True"}}]}}
"""


class Stack:
    def __init__(self) -> None:
        self.port = free_port()
        self.servers = {ip: FakeProviderThread(host=ip, port=self.port, name=f"pod-{ip}").start() for ip in PODS}
        self.gw = GatewayProcess(workers=2)
        pods = "".join(POD.format(i=i, ip=ip) for i, ip in enumerate(PODS))
        self.gw.write("gw.yaml", gateway_yaml(port=self.gw.port) + MANIFESTS.format(port=self.port) + pods)
        self.gw.start()

    def set_loads(self, loads: dict[str, dict[str, float]]) -> None:
        """Set each server's reported load, then wait until every worker could have scraped it."""
        before = {ip: s.provider.metrics_scrapes for ip, s in self.servers.items()}
        for ip, load in loads.items():
            httpx.put(f"http://{ip}:{self.port}/_fake/load", json=load).raise_for_status()
        # Two workers scrape each server; 4 scrapes after the change include one per worker.
        wait_until(
            lambda: all(s.provider.metrics_scrapes >= before[ip] + 4 for ip, s in self.servers.items()),
            "every model server scraped after the load change",
        )

    def served_by(self) -> Counter[str]:
        return Counter({ip: len(s.provider.requests) for ip, s in self.servers.items()})

    def clear(self) -> None:
        for s in self.servers.values():
            s.provider.clear_requests()

    def close(self) -> None:
        self.gw.stop()
        self.gw.cleanup()
        for s in self.servers.values():
            s.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _client(stack: Stack, objective: str | None = None) -> openai.OpenAI:
    headers = {"x-gateway-inference-objective": objective} if objective else {}
    return openai.OpenAI(base_url=stack.gw.url + "/v1", api_key="unused", max_retries=0, default_headers=headers)


def _ask(stack: Stack, objective: str | None = None) -> str:
    resp = _client(stack, objective).chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
    return resp.choices[0].message.content or ""


def test_least_loaded_pod_gets_the_requests(stack: Stack) -> None:
    stack.clear()
    stack.set_loads(
        {
            PODS[0]: {"waiting": 40, "running": 8, "kv_cache_usage_perc": 0.95},
            PODS[1]: {"waiting": 0, "running": 1, "kv_cache_usage_perc": 0.1},
            PODS[2]: {"waiting": 40, "running": 8, "kv_cache_usage_perc": 0.2},
        }
    )
    for _ in range(6):
        assert f"pod-{PODS[1]}" in _ask(stack)
    assert stack.served_by() == Counter({PODS[0]: 0, PODS[1]: 6, PODS[2]: 0})


def test_saturated_pool_sheds_low_priority_and_serves_high(stack: Stack) -> None:
    stack.clear()
    stack.set_loads({ip: {"waiting": 9, "running": 16, "kv_cache_usage_perc": 0.99} for ip in PODS})
    with pytest.raises(openai.RateLimitError) as info:
        _ask(stack)
    body = info.value.response.json()
    assert body["error"]["code"] == "pool_saturated"
    assert "qwen-pool" in body["error"]["message"]
    assert "pod-" in _ask(stack, objective="interactive")
    assert sum(stack.served_by().values()) == 1
    metrics = stack.gw.metrics()
    assert 'llmgw_inference_pool_sheds_total{objective="",pool="default/qwen-pool"}' in metrics
    assert 'llmgw_inference_pool_picks_total{objective="interactive",pool="default/qwen-pool",saturated="true"}' in (
        metrics
    )


def test_model_header_routes_to_the_pool_and_others_do_not_match(stack: Stack) -> None:
    stack.set_loads({ip: {"waiting": 0, "kv_cache_usage_perc": 0.0} for ip in PODS})
    with pytest.raises(openai.NotFoundError):
        _client(stack).chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    assert "pod-" in _ask(stack)
