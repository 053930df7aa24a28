"""The in-process API server is faithful where the provider depends on it, checked through the official client.

Both the generic wrapper (`controlplane.kubernetes.client.Kube`) and the
official typed APIs (CoreV1Api, CustomObjectsApi, kubernetes.watch.Watch) are
used, so a divergence from the real API server's behaviour shows up here.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from controlplane.kubernetes.client import Gone, Kube, KubeError
from tests.harness import wait_until
from tests.k8s.apiserver import ApiServer
from tests.k8s.conftest import configuration


def secret(name: str, value: str = "dg==", ns: str = "default", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, **meta},
        "data": {"k": value},
    }


def gateway(name: str = "gw", ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": "llmgw", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    }


def collect(kube: Kube, kind: str, rv: str, seconds: float, **kw: Any) -> list[dict[str, Any]]:
    return list(kube.watch(kind, resource_version=rv, timeout_seconds=int(seconds), **kw))


def test_resource_versions_increase_and_list_carries_one(kube: Kube) -> None:
    a = kube.create(secret("a"))
    b = kube.create(secret("b"))
    items, rv = kube.list("Secret", namespace="default")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert int(a["metadata"]["resourceVersion"]) < int(b["metadata"]["resourceVersion"]) <= int(rv)
    assert all(i["kind"] == "Secret" and i["apiVersion"] == "v1" for i in items)


def test_watch_events_in_order_with_bookmarks(apiserver: ApiServer, kube: Kube) -> None:
    _, rv = kube.list("Secret")
    events: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: events.extend(collect(kube, "Secret", rv, 2)))
    t.start()
    wait_until(lambda: apiserver.watches_started == 1, "the watch to start")
    created = kube.create(secret("a"))
    kube.replace({**created, "data": {"k": "dw=="}})
    kube.delete("Secret", "a", namespace="default")
    t.join()
    changes = [(e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"]
    assert changes == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert (
        bookmarks
        and bookmarks[-1]["object"]["metadata"]["resourceVersion"]
        == events[-1]["object"]["metadata"]["resourceVersion"]
    )


def test_watch_from_a_compacted_resource_version_is_410_gone(apiserver: ApiServer, kube: Kube) -> None:
    kube.create(secret("a"))
    _, rv = kube.list("Secret")
    kube.create(secret("b"))
    apiserver.compact()
    with pytest.raises(Gone):
        collect(kube, "Secret", rv, 1)
    _, fresh = kube.list("Secret")
    assert [e for e in collect(kube, "Secret", fresh, 1) if e["type"] != "BOOKMARK"] == []


def test_official_watch_raises_410_too(apiserver: ApiServer) -> None:
    """kubernetes.watch.Watch retries a 410 once, then raises it: the informer must relist itself."""
    core = k8s.CoreV1Api(k8s.ApiClient(configuration(apiserver)))
    core.create_namespaced_secret("default", secret("a"))
    rv = core.list_namespaced_secret("default").metadata.resource_version
    core.create_namespaced_secret("default", secret("b"))
    apiserver.compact()
    with pytest.raises(k8s.ApiException) as info:
        for _ in k8s_watch.Watch().stream(core.list_namespaced_secret, "default", resource_version=rv):
            pass
    assert info.value.status == 410


def test_stale_resource_version_is_409_conflict(kube: Kube) -> None:
    first = kube.create(secret("a"))
    kube.replace({**first, "data": {"k": "dw=="}})
    with pytest.raises(KubeError) as info:
        kube.replace({**first, "data": {"k": "eA=="}})
    assert info.value.status == 409 and info.value.reason == "Conflict"


def test_status_subresource_is_separate(kube: Kube) -> None:
    gw = kube.create({**gateway(), "status": {"ignored": True}})
    assert "status" not in gw and gw["metadata"]["generation"] == 1
    with_status = kube.replace_status({**gw, "status": {"conditions": [{"type": "Accepted"}]}})
    assert with_status["status"] == {"conditions": [{"type": "Accepted"}]}
    assert with_status["metadata"]["generation"] == 1  # status writes do not bump generation
    spec_change = {**with_status, "spec": {**with_status["spec"], "gatewayClassName": "other"}, "status": {}}
    updated = kube.replace(spec_change)
    assert updated["status"] == {"conditions": [{"type": "Accepted"}]}  # the main resource ignores status
    assert updated["metadata"]["generation"] == 2


def test_noop_update_keeps_the_resource_version(apiserver: ApiServer, kube: Kube) -> None:
    gw = kube.create(gateway())
    written = kube.replace_status({**gw, "status": {"a": 1}})
    again = kube.replace_status({**written, "status": {"a": 1}})
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_deleting_an_owner_deletes_its_dependents(kube: Kube) -> None:
    gw = kube.create(gateway())
    owner = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "name": "gw",
        "uid": gw["metadata"]["uid"],
    }
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "gw", "namespace": "default", "ownerReferences": [owner]},
        }
    )
    kube.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "other", "namespace": "default"}})
    kube.delete("Gateway", "gw", namespace="default")
    assert kube.get("ServiceAccount", "gw", namespace="default") is None
    assert kube.get("ServiceAccount", "other", namespace="default") is not None


def test_services_get_cluster_ips_and_node_ports(kube: Kube) -> None:
    svc = kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }
    )
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    assert svc["spec"]["ports"][0]["nodePort"] >= 30000


def test_label_selectors_filter_lists_and_watches(kube: Kube) -> None:
    kube.create(secret("a", labels={"app.kubernetes.io/managed-by": "llmgw"}))
    kube.create(secret("b"))
    items, rv = kube.list("Secret", label_selector="app.kubernetes.io/managed-by=llmgw")
    assert [i["metadata"]["name"] for i in items] == ["a"]
    kube.create(secret("c"))
    kube.create(secret("d", labels={"app.kubernetes.io/managed-by": "llmgw"}))
    events = collect(kube, "Secret", rv, 1, label_selector="app.kubernetes.io/managed-by=llmgw")
    assert [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"] == ["d"]


def test_typed_official_apis_work(apiserver: ApiServer) -> None:
    api = k8s.ApiClient(configuration(apiserver))
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "gateways", gateway())
    got = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "gateways", "gw")
    assert got["spec"]["gatewayClassName"] == "llmgw"
    patched = custom.patch_namespaced_custom_object_status(
        "gateway.networking.k8s.io", "v1", "default", "gateways", "gw", {"status": {"x": 1}}
    )
    assert patched["status"] == {"x": 1}
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret("default", secret("s"))
    assert core.read_namespaced_secret("s", "default").data == {"k": "dg=="}
    with pytest.raises(k8s.ApiException) as info:
        core.read_namespaced_secret("missing", "default")
    assert info.value.status == 404


def test_injected_failures(apiserver: ApiServer, kube: Kube) -> None:
    apiserver.inject("GET", "/secrets", 500)
    with pytest.raises(KubeError) as info:
        kube.list("Secret")
    assert info.value.status == 500
    assert kube.list("Secret")[0] == []
