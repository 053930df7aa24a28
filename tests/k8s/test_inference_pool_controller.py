"""InferencePools in Kubernetes mode: the controller watches pools, pods (ready only) and picker Services,
programs each Gateway's Envoy and writes the GIE status per parent Gateway (in-process API server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controlplane.xds import names
from tests.harness import wait_until
from tests.k8s import manifests as m
from tests.k8s.apiserver import ApiServer
from tests.k8s.test_controller import Running, apply_all


@pytest.fixture
def run_controller(apiserver: ApiServer) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**opts: Any) -> Running:
        r = Running(apiserver, **opts)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}


def pool(name: str, *, picker: str | None = "epp", app: str = "vllm") -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": app}}, "targetPorts": [{"number": 8000}]}
    if picker:
        spec["endpointPickerRef"] = {"name": picker, "port": {"number": 9002}, "failureMode": "FailOpen"}
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def pod(name: str, ip: str, *, ready: bool = True, app: str = "vllm") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": 9002}], "selector": {"app": name}},
    }


def pool_route(name: str, pool_name: str, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "llmgw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "backendRefs": [{**POOL_REF, "name": pool_name}],
                }
            ],
        },
    }


def pool_condition(apiserver: ApiServer, name: str, ctype: str) -> tuple[str, str] | None:
    return m.condition(apiserver.get("InferencePool", name), ctype, "parents", 0)


def pool_endpoints(ctl: Running, name: str) -> set[str]:
    """The endpoints of the pool's cluster in the Gateway's published snapshot."""
    snap = ctl.controller.ads.snapshot("default/llmgw")
    plan = ctl.controller.plan
    if snap is None or plan is None or f"inferencepool/default/{name}" not in snap.types[names.TYPE_CLUSTER].by_name:
        return set()
    gateway = plan.gateways.get("default/llmgw")
    pools = {p.key: p for p in gateway.ir.pools} if gateway else {}
    found = pools.get(f"default/{name}")
    return {f"{ip}:{port}" for ip, port in found.endpoints} if found else set()


def test_pool_is_programmed_with_ready_pods_and_reported_per_parent(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(
        apiserver,
        [
            m.gatewayclass(),
            m.gateway(),
            pool_route("chat", "qwen", "/v1"),
            pool("qwen"),
            service("epp"),
            pod("qwen-0", "10.4.0.1"),
            pod("qwen-1", "10.4.0.2", ready=False),
            pod("other", "10.4.0.3", app="other"),
        ],
    )
    ctl = run_controller()
    wait_until(lambda: pool_condition(apiserver, "qwen", "Accepted") == ("True", "Accepted"), "pool Accepted")
    assert pool_condition(apiserver, "qwen", "ResolvedRefs") == ("True", "ResolvedRefs")
    entry = apiserver.get("InferencePool", "qwen")["status"]["parents"][0]  # type: ignore[index]
    assert entry["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "default",
        "name": "llmgw",
    }
    assert entry["controllerName"] == "llmgw.dev/gateway-controller"
    wait_until(lambda: pool_endpoints(ctl, "qwen") == {"10.4.0.1:8000"}, "the ready pod only")
    snap = ctl.controller.ads.snapshot("default/llmgw")
    assert snap is not None and "endpointpicker/default/qwen" in snap.types[names.TYPE_CLUSTER].by_name

    # The second pod becomes ready, the first one goes away.
    apiserver.apply(pod("qwen-1", "10.4.0.2"))
    apiserver.remove("Pod", "qwen-0")
    wait_until(lambda: pool_endpoints(ctl, "qwen") == {"10.4.0.2:8000"}, "endpoints follow the pods")


def test_missing_picker_service_is_invalid_extension_ref(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(
        apiserver,
        [m.gatewayclass(), m.gateway(), pool_route("chat", "qwen", "/v1"), pool("qwen", picker="no-such-epp")],
    )
    run_controller()
    wait_until(
        lambda: pool_condition(apiserver, "qwen", "ResolvedRefs") == ("False", "InvalidExtensionRef"),
        "ResolvedRefs InvalidExtensionRef",
    )
    assert m.condition(apiserver.get("HTTPRoute", "chat"), "Accepted", "parents", 0) == ("True", "Accepted")
    apiserver.apply(service("no-such-epp"))
    wait_until(lambda: pool_condition(apiserver, "qwen", "ResolvedRefs") == ("True", "ResolvedRefs"), "resolved")


def test_route_to_a_missing_pool_is_backend_not_found_and_unreferenced_pools_get_no_entry(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(
        apiserver,
        [m.gatewayclass(), m.gateway(), pool_route("chat", "absent", "/v1"), pool("unused"), service("epp")],
    )
    ctl = run_controller()
    wait_until(
        lambda: (
            m.condition(apiserver.get("HTTPRoute", "chat"), "ResolvedRefs", "parents", 0)
            == ("False", "BackendNotFound")
        ),
        "route BackendNotFound",
    )
    wait_until(lambda: ctl.controller.reconciles > 0, "a reconcile")
    assert "status" not in (apiserver.get("InferencePool", "unused") or {}) or not apiserver.get(
        "InferencePool", "unused"
    )["status"].get("parents")


def test_pool_without_picker_is_accepted(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(
        apiserver,
        [
            m.gatewayclass(),
            m.gateway(),
            pool_route("chat", "qwen", "/v1"),
            pool("qwen", picker=None),
            pod("a", "10.4.0.9"),
        ],
    )
    ctl = run_controller()
    wait_until(lambda: pool_condition(apiserver, "qwen", "Accepted") == ("True", "Accepted"), "Accepted")
    wait_until(lambda: pool_endpoints(ctl, "qwen") == {"10.4.0.9:8000"}, "endpoints")
    # llmgw picks for it: the Gateway's extproc config names the pool, its endpoints and its route.
    plan = ctl.controller.plan
    assert plan is not None
    extproc = plan.gateways["default/llmgw"].extproc
    assert extproc.pools["default/qwen"].endpoints == ["10.4.0.9:8000"]
    assert set(extproc.pool_routes.values()) == {"default/qwen"}


def test_a_cluster_without_the_inference_crds_still_reconciles(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """The API server answers 404 for InferencePool and InferenceObjective (CRDs not installed)."""
    for _ in range(50):  # every list for as long as the test runs (a retrying informer would never sync)
        apiserver.inject("GET", "inferencepools", 404, "NotFound")
        apiserver.inject("GET", "inferenceobjectives", 404, "NotFound")
    apply_all(apiserver, [*m.quickstart()])
    ctl = run_controller()
    wait_until(
        lambda: m.condition(apiserver.get("Gateway", "llmgw"), "Accepted") == ("True", "Accepted"),
        "the Gateway reconciled",
    )
    assert ctl.controller.informers["InferencePool"].synced.is_set()
    assert ctl.controller.informers["InferencePool"].items() == []


def test_optional_informer_finds_the_kind_once_it_is_served(apiserver: ApiServer) -> None:
    from controlplane.kubernetes.client import Kube
    from controlplane.kubernetes.informer import Informer
    from tests.k8s.conftest import configuration

    apiserver.inject("GET", "inferencepools", 404, "NotFound")
    apiserver.apply(pool("qwen"))
    kube = Kube.for_configuration(configuration(apiserver))
    informer = Informer(kube, "InferencePool", on_change=lambda: None, optional=True, optional_retry_s=0.05).start()
    try:
        wait_until(lambda: [o["metadata"]["name"] for o in informer.items()] == ["qwen"], "the pool after the 404")
        assert informer.stats["errors"] == 0
    finally:
        informer.stop()
        kube.close()


def objective(name: str, pool_name: str, priority: Any = 10, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "priority": priority,
            "poolRef": {"group": "inference.networking.k8s.io", "name": pool_name},
            **extra,
        },
    }


def objective_condition(apiserver: ApiServer, name: str) -> tuple[str, str] | None:
    return m.condition(apiserver.get("InferenceObjective", name), "Accepted")


def test_objective_status_for_pools_llmgw_picks_for(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """Accepted on objectives llmgw's picker acts on; an EPP pool's objectives are that EPP's to report."""
    apply_all(
        apiserver,
        [
            m.gatewayclass(),
            m.gateway(),
            pool_route("chat", "qwen", "/v1"),
            pool_route("epp-chat", "qwen-epp", "/epp"),
            pool("qwen", picker=None),
            pool("qwen-epp"),
            service("epp"),
            objective("interactive", "qwen"),
            objective("legacy", "qwen", criticality="Critical"),
            objective("bad", "qwen", priority="high"),
            objective("orphan", "absent"),
            objective("epp-owned", "qwen-epp"),
        ],
    )
    ctl = run_controller()
    wait_until(lambda: objective_condition(apiserver, "interactive") == ("True", "Accepted"), "Accepted")
    wait_until(lambda: objective_condition(apiserver, "orphan") == ("False", "NotFound"), "orphan NotFound")
    assert objective_condition(apiserver, "legacy") == ("True", "Accepted")  # its priority applies
    cond = apiserver.get("InferenceObjective", "legacy")["status"]["conditions"][0]  # type: ignore[index]
    assert "spec.criticality" in cond["message"]
    assert objective_condition(apiserver, "bad") == ("False", "Invalid")
    wait_until(lambda: ctl.controller.reconciles > 0, "a reconcile")
    assert "status" not in apiserver.get("InferenceObjective", "epp-owned")  # type: ignore[operator]
    # The pool appears: the orphan is accepted.
    apiserver.apply(pool("absent", picker=None))
    wait_until(lambda: objective_condition(apiserver, "orphan") == ("True", "Accepted"), "orphan Accepted")
