"""InferencePools through the real gateway: Envoy obeys an endpoint picker (GIE protocol, v1.6.0).

Model servers are fake OpenAI-compatible servers on distinct loopback IPs
(127.0.0.2-4, one port, as pods of one Deployment would be); the pool's pods
are `v1 Pod` manifests (standalone mode). The endpoint picker is a
protocol-faithful fake EPP (tests/fakes/epp.py) that picks what the
`test-epp-endpoint-selection` header says, like the conformance suite's.
The cases follow the GIE Gateway conformance tests of the same names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.epp import SELECTION_HEADER, SERVED_ECHO_HEADER, STATUS_HEADER, FakeEpp
from tests.fakes.h2c_server import H2cModelServer
from tests.harness import GatewayProcess, free_port, gateway_yaml

pytestmark = pytest.mark.integration

PODS_A = ("127.0.0.2", "127.0.0.3")
POD_B = "127.0.0.4"
DEAD_POD = "127.0.0.5"  # in pool A, nothing listens there
H2C_POD = "127.0.0.8"  # the pool with appProtocol kubernetes.io/h2c


def _pool(name: str, app: str, port: int, picker: str | None, mode: str = "FailClose") -> str:
    ref = f"\n  endpointPickerRef: {{name: {picker}, port: {{number: PICKER_PORT_{picker}}}, failureMode: {mode}}}"
    return f"""---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  targetPorts: [{{number: {port}}}]{ref if picker else ""}
"""


def _pod(name: str, app: str, ip: str, *, ready: bool = True) -> str:
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}
status:
  podIP: {ip}
  conditions: [{{type: Ready, status: "{"True" if ready else "False"}"}}]
"""


def _service(name: str) -> str:
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{clusterIP: 127.0.0.1}}
"""


ROUTES = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: pools, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /a}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-a, port: 1234}]
    - matches: [{path: {type: PathPrefix, value: /open}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-open}]
    - matches: [{path: {type: PathPrefix, value: /closed}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-closed}]
    - matches: [{path: {type: PathPrefix, value: /split}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}]
      backendRefs:
        - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-a, weight: 3}
        - {group: inference.networking.k8s.io, kind: InferencePool, name: pool-b, weight: 1}
"""


SECOND_GATEWAY = """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw2, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: second, namespace: default}}
spec:
  parentRefs: [{{name: gw2}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /a}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: pool-b}}]
    - matches: [{{path: {{type: PathPrefix, value: /dp}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: pool-dp}}]
    - matches: [{{path: {{type: PathPrefix, value: /h2c}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: pool-h2c}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: pool-h2c, namespace: default}}
spec:
  selector: {{matchLabels: {{app: h2c}}}}
  targetPorts: [{{number: {rank0}}}]
  appProtocol: kubernetes.io/h2c
---
apiVersion: v1
kind: Pod
metadata: {{name: h2c-0, namespace: default, labels: {{app: h2c}}}}
status: {{podIP: {h2c_ip}}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: pool-dp, namespace: default}}
spec:
  selector: {{matchLabels: {{app: a}}}}
  targetPorts: [{{number: {rank0}}}, {{number: {rank1}}}]
  endpointPickerRef: {{name: epp-a, port: {{number: {epp}}}}}
"""


class Stack:
    def __init__(self) -> None:
        self.port = free_port()
        self.servers = {
            ip: FakeProviderThread(host=ip, port=self.port, name=f"pod-{ip}").start() for ip in (*PODS_A, POD_B)
        }
        # A second data-parallel rank on each pod of pool A (pool-dp lists both ports).
        self.rank1 = free_port()
        self.rank1_servers = {
            ip: FakeProviderThread(host=ip, port=self.rank1, name=f"rank1-{ip}").start() for ip in PODS_A
        }
        self.gw2_port = free_port()
        self.h2c = H2cModelServer(host=H2C_POD, port=self.port, name="h2c-0").start()
        self.epp_a = FakeEpp(endpoints=[f"{ip}:{self.port}" for ip in PODS_A]).start()
        self.epp_b = FakeEpp(endpoints=[f"{POD_B}:{self.port}"]).start()
        self.dead_picker_port = free_port()  # no EPP listens here
        manifests = (
            _pool("pool-a", "a", self.port, "epp-a")
            + _pool("pool-b", "b", self.port, "epp-b")
            + _pool("pool-open", "a", self.port, "epp-dead", "FailOpen")
            + _pool("pool-closed", "a", self.port, "epp-dead")
            + "".join(_service(n) for n in ("epp-a", "epp-b", "epp-dead"))
            + _pod("a-0", "a", PODS_A[0])
            + _pod("a-1", "a", PODS_A[1])
            + _pod("a-dead", "a", DEAD_POD)
            + _pod("a-unready", "a", "127.0.0.6", ready=False)
            + _pod("b-0", "b", POD_B)
        )
        manifests = (
            manifests.replace("PICKER_PORT_epp-a", str(self.epp_a.port))
            .replace("PICKER_PORT_epp-b", str(self.epp_b.port))
            .replace("PICKER_PORT_epp-dead", str(self.dead_picker_port))
        )
        second = SECOND_GATEWAY.format(
            port=self.gw2_port, rank0=self.port, rank1=self.rank1, epp=self.epp_a.port, h2c_ip=H2C_POD
        )
        self.gw = GatewayProcess(workers=1)
        self.gw.write("gw.yaml", gateway_yaml(port=self.gw.port) + ROUTES + manifests + second)
        self.gw.start()

    def served_by(self) -> Counter[str]:
        return Counter({ip: len(s.provider.requests) for ip, s in self.servers.items()})

    def rank1_served_by(self) -> Counter[str]:
        return Counter({ip: len(s.provider.requests) for ip, s in self.rank1_servers.items()})

    def clear(self) -> None:
        for s in (*self.servers.values(), *self.rank1_servers.values()):
            s.provider.clear_requests()
        self.epp_a.clear()
        self.epp_b.clear()

    def close(self) -> None:
        self.gw.stop()
        self.gw.cleanup()
        for s in (*self.servers.values(), *self.rank1_servers.values()):
            s.stop()
        self.h2c.stop()
        self.epp_a.stop()
        self.epp_b.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _clean(stack: Stack) -> None:
    stack.clear()


def _client(stack: Stack, prefix: str, headers: dict[str, str] | None = None, *, base: str = "") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=(base or stack.gw.url) + prefix, api_key="unused", max_retries=0, default_headers=headers or {}
    )


def _chat(stack: Stack, prefix: str, headers: dict[str, str] | None = None, *, base: str = "") -> httpx.Response:
    resp = _client(stack, prefix, headers, base=base).chat.completions.with_raw_response.create(
        model="qwen", messages=[{"role": "user", "content": "hi"}]
    )
    return resp.http_response


def test_following_epp_routing_each_pod(stack: Stack) -> None:
    """GatewayFollowingEPPRouting + GatewayDestinationEndpointServed: the pick is honoured and reported back."""
    for ip in PODS_A:
        stack.clear()
        resp = _chat(stack, "/a", {SELECTION_HEADER: ip})
        assert resp.status_code == 200
        assert stack.served_by() == Counter({ip: 1, PODS_A[1 - PODS_A.index(ip)]: 0, POD_B: 0})
        assert resp.headers[SERVED_ECHO_HEADER] == f"{ip}:{stack.port}"
        (call,) = stack.epp_a.calls
        assert call.picked == f"{ip}:{stack.port}"
        assert call.served == f"{ip}:{stack.port}"
        assert b'"model":"qwen"' in call.body.replace(b" ", b"")
        assert call.response_ended and b"chat.completion" in call.response_body
        # The subset hint: every ready endpoint of the pool, and no unready pod.
        assert sorted(call.subset or []) == sorted(f"{p}:{stack.port}" for p in (*PODS_A, DEAD_POD))
        assert "x-gateway-destination-endpoint-served" not in resp.headers


def test_fallback_to_next_listed_endpoint(stack: Stack) -> None:
    """The picker lists a dead pod first: Envoy retries on the next endpoint it listed."""
    resp = _chat(stack, "/a", {SELECTION_HEADER: f"{DEAD_POD},{PODS_A[1]}"})
    assert resp.status_code == 200
    assert stack.served_by()[PODS_A[1]] == 1
    assert stack.served_by()[PODS_A[0]] == 0
    assert stack.epp_a.calls[0].picked == f"{DEAD_POD}:{stack.port},{PODS_A[1]}:{stack.port}"
    assert stack.epp_a.calls[0].served == f"{PODS_A[1]}:{stack.port}"


def test_client_destination_header_is_stripped(stack: Stack) -> None:
    """A client's x-gateway-destination-endpoint never reaches the picker nor picks a host."""
    target = f"{POD_B}:{stack.port}"  # a host outside pool A
    for _ in range(4):
        resp = _chat(stack, "/a", {"x-gateway-destination-endpoint": target})
        assert resp.status_code == 200
    assert stack.served_by()[POD_B] == 0
    assert all("x-gateway-destination-endpoint" not in c.headers for c in stack.epp_a.calls)
    # Nor on a FailOpen pool whose picker is down (no picker to overwrite it).
    for _ in range(4):
        assert _chat(stack, "/open", {"x-gateway-destination-endpoint": target}).status_code == 200
    assert stack.served_by()[POD_B] == 0


def test_epp_unavailable_fail_open(stack: Stack) -> None:
    """EppUnAvailableFailOpen: the picker is unreachable, any ready pod of the pool serves."""
    for _ in range(6):
        assert _chat(stack, "/open").status_code == 200
    served = stack.served_by()
    assert served[PODS_A[0]] + served[PODS_A[1]] == 6
    assert served[POD_B] == 0


def test_epp_unavailable_fail_close(stack: Stack) -> None:
    """FailClose (the default): an unreachable picker is a 503 in the client's schema."""
    with pytest.raises(openai.APIStatusError) as info:
        _client(stack, "/closed").chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 503
    body = info.value.response.json()
    assert body["error"]["type"] == "server_error"
    assert sum(stack.served_by().values()) == 0


def test_picker_sheds_with_429(stack: Stack) -> None:
    """A picker's ImmediateResponse (shedding) reaches the client; no pod is contacted."""
    resp = httpx.post(
        stack.gw.url + "/a/chat/completions",
        json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]},
        headers={STATUS_HEADER: "429"},
    )
    assert resp.status_code == 429
    assert sum(stack.served_by().values()) == 0


def test_weighted_across_two_pools(stack: Stack) -> None:
    """WeightedAcrossTwoInferencePools: each share calls its own pool's picker."""
    n = 40
    for _ in range(n):
        assert _chat(stack, "/split").status_code == 200
    served = stack.served_by()
    to_a = served[PODS_A[0]] + served[PODS_A[1]]
    assert to_a + served[POD_B] == n
    assert to_a == len(stack.epp_a.calls)
    assert served[POD_B] == len(stack.epp_b.calls)
    assert 0 < served[POD_B] < to_a


def test_streaming_through_picker(stack: Stack) -> None:
    """A streamed answer passes the picker's (full-duplex) response path unchanged."""
    stream = _client(stack, "/a", {SELECTION_HEADER: PODS_A[0]}).chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    assert stack.served_by()[PODS_A[0]] == 1


def test_multiple_gateways_different_pools(stack: Stack) -> None:
    """MultipleGatewaysDifferentPools: the same path on two Gateways reaches each Gateway's own pool."""
    gw2 = f"http://127.0.0.1:{stack.gw2_port}"
    assert _chat(stack, "/a", {SELECTION_HEADER: PODS_A[0]}).status_code == 200
    assert _chat(stack, "/a", base=gw2).status_code == 200
    assert stack.served_by() == Counter({PODS_A[0]: 1, PODS_A[1]: 0, POD_B: 1})
    assert len(stack.epp_b.calls) == 1


def test_following_epp_routing_with_data_parallelism(stack: Stack) -> None:
    """FollowingEPPRoutingWithDataParallelism: two target ports per pod; the picker may pin the rank."""
    gw2 = f"http://127.0.0.1:{stack.gw2_port}"
    for _ in range(2):
        assert _chat(stack, "/dp", {SELECTION_HEADER: f"{PODS_A[1]}:{stack.rank1}"}, base=gw2).status_code == 200
    assert stack.rank1_served_by() == Counter({PODS_A[0]: 0, PODS_A[1]: 2})
    assert sum(stack.served_by().values()) == 0
    # An IP alone: any rank of that pod, never another pod.
    for _ in range(4):
        assert _chat(stack, "/dp", {SELECTION_HEADER: PODS_A[0]}, base=gw2).status_code == 200
    assert stack.served_by()[PODS_A[0]] + stack.rank1_served_by()[PODS_A[0]] == 4
    assert stack.served_by()[PODS_A[1]] == 0
    subset = stack.epp_a.calls[-1].subset or []
    assert f"{PODS_A[0]}:{stack.port}" in subset and f"{PODS_A[0]}:{stack.rank1}" in subset


def test_app_protocol_h2c(stack: Stack) -> None:
    """InferencePoolAppProtocol: appProtocol kubernetes.io/h2c makes Envoy speak HTTP/2 cleartext to the pods."""
    gw2 = f"http://127.0.0.1:{stack.gw2_port}"
    resp = _chat(stack, "/h2c", base=gw2)
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "h2c h2c-0"
    assert stack.h2c.versions == ["2"]
