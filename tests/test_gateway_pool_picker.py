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

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, free_port, gateway_yaml, wait_until

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

EPP_POOL = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: via-epp, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /epp}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen-epp}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: qwen-epp, namespace: default}}
spec:
  selector: {{matchLabels: {{app: qwen}}}}
  targetPorts: [{{number: {port}}}]
  endpointPickerRef: {{name: llmgw-epp, port: {{number: {epp_port}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: llmgw-epp, namespace: default}}
spec: {{clusterIP: 127.0.0.1}}
"""

# Pool routes behind an API key policy (attached to the HTTPRoute): one to each pool.
KEYED = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: keyed, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /keyed}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: qwen-pool}]
    - matches: [{path: {type: PathPrefix, value: /keyed-epp}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: qwen-epp}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIPolicy
metadata: {name: keyed, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: keyed}]
  traffic:
    apiKeyAuthentication: {mode: Strict, secretRef: {name: pool-keys}}
---
apiVersion: v1
kind: Secret
metadata: {name: pool-keys, namespace: default}
stringData:
  alice: '{"key": "sk-pool-alice"}'
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
        # llmgw's picker as a separate EPP (as in Kubernetes), for the pool qwen-epp.
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
                "default/qwen-epp",
                "--endpoints",
                ",".join(f"{ip}:{self.port}" for ip in PODS),
                "--objective",
                "interactive=10",
            ],
            cwd=REPO,
        )
        # A shed request waits up to 3 s (the most llmgw allows) for room before its 429: the test
        # that frees the pool meanwhile must not depend much on how fast this machine scrapes.
        self.gw = GatewayProcess(workers=2, env={"LLMGW_PICKER_QUEUE_SECONDS": "3"})
        pods = "".join(POD.format(i=i, ip=ip) for i, ip in enumerate(PODS))
        manifests = MANIFESTS.format(port=self.port) + EPP_POOL.format(port=self.port, epp_port=self.epp_port)
        self.gw.write("gw.yaml", gateway_yaml(port=self.gw.port) + manifests + KEYED + pods)
        self.gw.start()

    def set_loads(self, loads: dict[str, dict[str, float]]) -> None:
        """Set each server's reported load, then wait until every scraper (2 workers, the EPP) read it."""
        scrapers = 3
        wait_until(
            lambda: all(len(s.provider.metrics_scrapes) >= scrapers for s in self.servers.values()),
            "every scraper scraping every model server",
        )
        before = {ip: dict(s.provider.metrics_scrapes) for ip, s in self.servers.items()}
        for ip, load in loads.items():
            httpx.put(f"http://{ip}:{self.port}/_fake/load", json=load).raise_for_status()
        # A scrape that started after the change: two more by each scraper.
        wait_until(
            lambda: all(
                n >= before[ip].get(agent, 0) + 2
                for ip, s in self.servers.items()
                for agent, n in dict(s.provider.metrics_scrapes).items()
            ),
            "every scraper scraped every model server after the load change",
        )

    def served_by(self) -> Counter[str]:
        return Counter({ip: len(s.provider.requests) for ip, s in self.servers.items()})

    def clear(self) -> None:
        for s in self.servers.values():
            s.provider.clear_requests()

    def close(self) -> None:
        self.gw.stop()
        self.gw.cleanup()
        self.epp.send_signal(signal.SIGTERM)
        assert self.epp.wait(20) == 0
        for s in self.servers.values():
            s.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _active_requests(stack: Stack) -> int:
    stats = stack.gw.admin("/stats?filter=downstream_rq_active$").text
    return sum(int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if line.startswith("http.default_gw"))


def _client(stack: Stack, objective: str | None = None, prefix: str = "/v1", key: str = "unused") -> openai.OpenAI:
    headers = {"x-gateway-inference-objective": objective} if objective else {}
    return openai.OpenAI(base_url=stack.gw.url + prefix, api_key=key, max_retries=0, default_headers=headers)


def _ask(stack: Stack, objective: str | None = None, prefix: str = "/v1", key: str = "unused") -> str:
    resp = _client(stack, objective, prefix, key).chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "hi"}]
    )
    return resp.choices[0].message.content or ""


def _picks(stack: Stack) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in stack.gw.metrics().splitlines()
        if line.startswith("llmgw_inference_pool_picks_total{") and 'pool="default/qwen-pool"' in line
    )


def test_a_caller_refused_by_the_api_key_policy_never_reaches_a_picker(stack: Stack) -> None:
    """Authentication comes first: a refused request is not picked for (llmgw's picker, in the router
    stage) nor sent to the pool's EPP, and no model server sees it; a valid key is served as usual."""
    stack.clear()
    stack.set_loads({ip: {"waiting": 0, "kv_cache_usage_perc": 0.1} for ip in PODS})
    before = _picks(stack)
    for prefix in ("/keyed", "/keyed-epp"):
        with pytest.raises(openai.AuthenticationError) as info:
            _ask(stack, prefix=prefix, key="sk-wrong")
        assert info.value.response.json()["error"]["code"] == "invalid_api_key"
    assert sum(stack.served_by().values()) == 0
    assert _picks(stack) == before
    for prefix in ("/keyed", "/keyed-epp"):
        assert "pod-" in _ask(stack, prefix=prefix, key="sk-pool-alice")
    assert sum(stack.served_by().values()) == 2
    assert _picks(stack) == before + 1
    # The client's key never reaches a model server.
    for s in stack.servers.values():
        for req in s.provider.requests:
            assert "sk-pool-alice" not in str(req.headers)


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


def test_shed_priority_waits_for_room_and_is_served(stack: Stack) -> None:
    """Under saturation a low priority queues briefly; when the pool frees up in time it is served."""
    stack.clear()
    stack.set_loads({ip: {"waiting": 9, "running": 16, "kv_cache_usage_perc": 0.99} for ip in PODS})
    answers: list[str] = []
    waiting = threading.Thread(target=lambda: answers.append(_ask(stack)))
    waiting.start()
    wait_until(
        lambda: (
            'llmgw_inference_pool_queue_seconds_count{objective="",outcome="picked",pool="default/qwen-pool"}'
            in stack.gw.metrics()
            or stack.gw.metrics().count("llmgw_inference_pool_queue_seconds_bucket") > 0
        ),
        "the request queued",
    )
    stack.set_loads({ip: {"waiting": 0, "kv_cache_usage_perc": 0.1} for ip in PODS})
    waiting.join(30)
    assert answers and "pod-" in answers[0]
    assert 'outcome="picked",pool="default/qwen-pool"' in stack.gw.metrics()


def test_model_header_routes_to_the_pool_and_others_do_not_match(stack: Stack) -> None:
    stack.set_loads({ip: {"waiting": 0, "kv_cache_usage_perc": 0.0} for ip in PODS})
    with pytest.raises(openai.NotFoundError):
        _client(stack).chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    assert "pod-" in _ask(stack)


def test_llmgw_epp_picks_least_loaded_and_sheds(stack: Stack) -> None:
    """`llmgw epp` as the pool's endpoint picker: the same picks and shedding, over the GIE protocol."""
    stack.clear()
    stack.set_loads(
        {
            PODS[0]: {"waiting": 40, "kv_cache_usage_perc": 0.95},
            PODS[1]: {"waiting": 40, "kv_cache_usage_perc": 0.95},
            PODS[2]: {"waiting": 0, "kv_cache_usage_perc": 0.1},
        }
    )
    for _ in range(4):
        assert f"pod-{PODS[2]}" in _ask(stack, prefix="/epp")
    stack.set_loads({ip: {"waiting": 9, "kv_cache_usage_perc": 0.99} for ip in PODS})
    with pytest.raises(openai.RateLimitError) as info:
        _ask(stack, prefix="/epp")
    assert info.value.response.json()["error"]["code"] == "pool_saturated"
    assert "pod-" in _ask(stack, objective="interactive", prefix="/epp")
    assert sum(stack.served_by().values()) == 5
