"""InferencePool -> IR and Envoy config: selectors, ready pods, pickers, problems with GIE reasons."""

from __future__ import annotations

from controlplane.gatewayapi import translate
from controlplane.resources import Resource
from controlplane.xds.inference_pool import PICKER_FILTER
from controlplane.xds.names import ROUTER_STAGE_FILTER
from controlplane.xds.translate import to_protos
from controlplane.xds.translate import translate as to_envoy


def _res(api: str, kind: str, name: str, body: dict, ns: str = "default") -> Resource:
    return Resource(api, kind, name, ns, {"metadata": {"name": name, "namespace": ns}, **body}, file="t.yaml")


def _pod(name: str, ip: str | None, labels: dict, *, ready: str | None = "True", deleting: bool = False) -> Resource:
    status: dict = {}
    if ip:
        status["podIP"] = ip
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    meta = {"name": name, "namespace": "default", "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return Resource("v1", "Pod", name, "default", {"metadata": meta, "status": status}, file="t.yaml")


GATEWAY = [
    _res(
        "gateway.networking.k8s.io/v1",
        "GatewayClass",
        "llmgw",
        {"spec": {"controllerName": "llmgw.dev/gateway-controller"}},
        ns="",
    ),
    _res(
        "gateway.networking.k8s.io/v1",
        "Gateway",
        "gw",
        {"spec": {"gatewayClassName": "llmgw", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}},
    ),
]


def _route(*refs: dict) -> Resource:
    return _res(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "r",
        {"spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": list(refs)}]}},
    )


def _pool_ref(name: str, **extra: object) -> dict:
    return {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name, **extra}


def _pool(name: str, spec: dict) -> Resource:
    return _res("inference.networking.k8s.io/v1", "InferencePool", name, {"spec": spec})


SPEC = {
    "selector": {"matchLabels": {"app": "vllm"}},
    "targetPorts": [{"number": 8000}],
    "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
}
EPP = _res("v1", "Service", "epp", {"spec": {"clusterIP": "10.0.0.9"}})


def test_ready_pods_only_times_target_ports() -> None:
    pods = [
        _pod("a", "10.1.0.1", {"app": "vllm"}),
        _pod("b", "10.1.0.2", {"app": "vllm", "extra": "x"}),
        _pod("unready", "10.1.0.3", {"app": "vllm"}, ready="False"),
        _pod("no-ip", None, {"app": "vllm"}),
        _pod("terminating", "10.1.0.4", {"app": "vllm"}, deleting=True),
        _pod("other", "10.1.0.5", {"app": "other"}),
    ]
    spec = {**SPEC, "targetPorts": [{"number": 8000}, {"number": 8001}]}
    t = translate([*GATEWAY, _route(_pool_ref("p", port=1234)), _pool("p", spec), EPP, *pods])
    assert t.problems == []
    (pool,) = t.ir.pools
    assert pool.endpoints == (("10.1.0.1", 8000), ("10.1.0.1", 8001), ("10.1.0.2", 8000), ("10.1.0.2", 8001))
    assert pool.picker is not None and (pool.picker.host, pool.picker.port, pool.picker.fail_open) == (
        "10.0.0.9",
        9002,
        False,
    )


def test_missing_picker_service_is_invalid_extension_ref() -> None:
    t = translate([*GATEWAY, _route(_pool_ref("p")), _pool("p", SPEC)])
    reasons = {(p.obj, p.reason) for p in t.problems}
    assert ("InferencePool default/p", "InvalidExtensionRef") in reasons
    assert ("HTTPRoute default/r", "BackendNotFound") in reasons
    assert t.ir.pools == ()


def test_no_picker_is_a_note_and_envoy_balances() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "endpointPickerRef"}
    t = translate([*GATEWAY, _route(_pool_ref("p")), _pool("p", spec), _pod("a", "10.1.0.1", {"app": "vllm"})])
    assert t.problems == []
    assert [n.reason for n in t.notes] == ["EndpointPickerRefMissing"]
    envoy = to_envoy(t.ir)
    to_protos(envoy)
    assert all(f["name"] != PICKER_FILTER for f in _http_filters(envoy))


def test_unsupported_and_malformed_fields_are_problems() -> None:
    spec = {
        **SPEC,
        "selector": {"matchLabels": {"app": "vllm"}, "matchExpressions": []},
        "targetPorts": [{"number": 8000}, {"number": 8000}],
        "appProtocol": "grpc",
        "endpointPickerRef": {"name": "epp", "port": {"number": 9002}, "failureMode": "Maybe"},
        "extra": True,
    }
    t = translate([*GATEWAY, _route(_pool_ref("p")), _pool("p", spec), EPP])
    fields = {p.field for p in t.problems if p.obj == "InferencePool default/p"}
    assert {
        "spec.selector.matchExpressions",
        "spec.targetPorts[1].number",
        "spec.appProtocol",
        "spec.endpointPickerRef.failureMode",
        "spec.extra",
    } <= fields


def test_weighted_pools_each_call_their_picker() -> None:
    epp_b = _res("v1", "Service", "epp-b", {"spec": {"externalName": "epp-b.example"}})
    spec_b = {**SPEC, "endpointPickerRef": {"name": "epp-b", "port": {"number": 9003}, "failureMode": "FailOpen"}}
    t = translate(
        [
            *GATEWAY,
            _route(_pool_ref("a", weight=3), _pool_ref("b", weight=1)),
            _pool("a", SPEC),
            _pool("b", spec_b),
            EPP,
            epp_b,
        ]
    )
    assert t.problems == []
    envoy = to_envoy(t.ir)
    to_protos(envoy)
    (route,) = [r for vh in envoy.routes[0]["virtual_hosts"] for r in vh["routes"]]
    clusters = route["route"]["weighted_clusters"]["clusters"]
    overrides = [c["typed_per_filter_config"][PICKER_FILTER]["overrides"] for c in clusters]
    assert [o["grpc_service"]["envoy_grpc"]["cluster_name"] for o in overrides] == [
        "endpointpicker/default/a",
        "endpointpicker/default/b",
    ]
    assert [o["failure_mode_allow"] for o in overrides] == [False, True]
    names = {c["name"] for c in envoy.clusters}
    assert {"inferencepool/default/a", "inferencepool/default/b", "endpointpicker/default/b"} <= names


def test_ai_routes_keep_the_picker_off() -> None:
    backend = _res(
        "llmgw.dev/v1alpha1",
        "AIBackend",
        "ai",
        {"spec": {"ai": {"provider": {"openai": {}, "host": "127.0.0.1", "port": 9}}}},
    )
    route = _res(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "r",
        {
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {"matches": [{"path": {"value": "/pool"}}], "backendRefs": [_pool_ref("p")]},
                    {"backendRefs": [{"group": "llmgw.dev", "kind": "AIBackend", "name": "ai"}]},
                ],
            }
        },
    )
    t = translate([*GATEWAY, route, backend, _pool("p", SPEC), EPP])
    assert t.problems == []
    envoy = to_envoy(t.ir)
    routes = [r for vh in envoy.routes[0]["virtual_hosts"] for r in vh["routes"]]
    configs = {r["name"]: r["typed_per_filter_config"][PICKER_FILTER] for r in routes}
    assert sum("overrides" in c for c in configs.values()) == 1
    assert sum(c.get("disabled") is True for c in configs.values()) == 1


def _http_filters(envoy: object) -> list[dict]:
    listener = envoy.listeners[0]  # type: ignore[attr-defined]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return list(hcm["http_filters"])


def test_a_rule_mixing_pools_and_ai_backends_is_a_problem() -> None:
    backend = _res(
        "llmgw.dev/v1alpha1",
        "AIBackend",
        "ai",
        {"spec": {"ai": {"provider": {"openai": {}, "host": "127.0.0.1", "port": 9}}}},
    )
    route = _route(_pool_ref("p"), {"group": "llmgw.dev", "kind": "AIBackend", "name": "ai"})
    t = translate([*GATEWAY, route, backend, _pool("p", SPEC), EPP])
    assert [(p.field, p.reason) for p in t.problems] == [("spec.rules[0].backendRefs", "Unsupported")]


def test_an_authenticated_pool_route_has_its_guard_and_the_picker_after_the_router_stage() -> None:
    """The 401 guard in front of a pool route never calls the pool's picker; the picker filter comes
    after jwt_authn and the router stage (which authenticates), so a refused request never reaches it."""
    policy = _res(
        "llmgw.dev/v1alpha1",
        "AIPolicy",
        "keys",
        {
            "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                "traffic": {"apiKeyAuthentication": {"mode": "Strict", "secretRef": {"name": "keys"}}},
            }
        },
    )
    secret = _res("v1", "Secret", "keys", {"stringData": {"alice": '{"key": "sk-alice"}'}})
    t = translate([*GATEWAY, _route(_pool_ref("p")), _pool("p", SPEC), EPP, policy, secret])
    assert t.problems == []
    envoy = to_envoy(t.ir)
    to_protos(envoy)
    guard, route = [r for vh in envoy.routes[0]["virtual_hosts"] for r in vh["routes"]]
    assert guard["direct_response"]["status"] == 401
    assert guard["typed_per_filter_config"][PICKER_FILTER] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        "disabled": True,
    }
    assert "overrides" in route["typed_per_filter_config"][PICKER_FILTER]
    names = [f["name"] for f in _http_filters(envoy)]
    assert names.index(ROUTER_STAGE_FILTER) < names.index(PICKER_FILTER)


def test_a_rule_mixing_pools_and_services_is_a_problem() -> None:
    service = _res("v1", "Service", "plain", {"spec": {"clusterIP": "10.0.0.7", "ports": [{"port": 80}]}})
    route = _route(_pool_ref("p"), {"kind": "Service", "name": "plain", "port": 80})
    t = translate([*GATEWAY, route, _pool("p", SPEC), EPP, service])
    assert [p.field for p in t.problems] == ["spec.rules[0].backendRefs"]
