"""Status computation: each condition reason, from real translation Problems, and the write-only-on-change rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.kubernetes import status
from controlplane.kubernetes.provision import Settings
from controlplane.kubernetes.reconcile import StatusKey, reconcile
from controlplane.resources import Problem, Resource, load_files

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = "2025-01-01T00:00:00Z"
SETTINGS = Settings(image="img", xds_host="ctrl")


@pytest.fixture(scope="module")
def statuses() -> dict[StatusKey, dict[str, Any]]:
    resources, _ = load_files([GOLDEN / "problems.in.yaml"])
    return reconcile(resources, settings=SETTINGS, now=NOW).statuses


def cond(conditions: list[dict[str, Any]], kind: str) -> tuple[str, str]:
    (c,) = [c for c in conditions if c["type"] == kind]
    return c["status"], c["reason"]


def parent(st: dict[str, Any], gateway: str) -> list[dict[str, Any]]:
    (p,) = [p for p in st["parents"] if p["parentRef"]["name"] == gateway]
    return p["conditions"]


@pytest.mark.parametrize(
    ("kind", "name", "ctype", "expected"),
    [
        ("GatewayClass", "llmgw", "Accepted", ("True", "Accepted")),
        ("GatewayClass", "bad-params", "Accepted", ("False", "InvalidParameters")),
        ("Gateway", "gw2", "Accepted", ("True", "Accepted")),
        ("Gateway", "gw", "Accepted", ("True", "ListenersNotValid")),
        ("Gateway", "all-bad", "Accepted", ("False", "ListenersNotValid")),
        ("Gateway", "missing-params", "Accepted", ("False", "InvalidParameters")),
        ("Gateway", "missing-params", "Programmed", ("False", "Invalid")),
        ("Gateway", "gw2", "Programmed", ("False", "Pending")),
        ("AIBackend", "ok", "Accepted", ("True", "Accepted")),
        ("AIBackend", "ok", "Programmed", ("True", "Programmed")),
        ("AIBackend", "no-secret", "ResolvedRefs", ("False", "RefNotFound")),
        ("AIBackend", "no-key", "ResolvedRefs", ("False", "RefNotFound")),
        ("AIBackend", "no-key", "Accepted", ("False", "RefNotFound")),
        ("AIBackend", "invalid", "Accepted", ("False", "Invalid")),
        ("AIBackend", "invalid", "ResolvedRefs", ("True", "ResolvedRefs")),
    ],
)
def test_object_conditions(statuses: dict[StatusKey, Any], kind: str, name: str, ctype: str, expected: Any) -> None:
    (st,) = [v for k, v in statuses.items() if k.kind == kind and k.name == name]
    assert cond(st["conditions"], ctype) == expected


@pytest.mark.parametrize(
    ("listener", "ctype", "expected"),
    [
        ("http", "Accepted", ("True", "Accepted")),
        ("tcp", "Accepted", ("False", "UnsupportedProtocol")),
        ("dup-b", "Conflicted", ("True", "HostnameConflict")),
        ("dup-b", "Accepted", ("False", "UnsupportedValue")),
        ("dup-a", "Conflicted", ("False", "NoConflicts")),
        ("grpc-only", "ResolvedRefs", ("False", "InvalidRouteKinds")),
        ("http", "Programmed", ("False", "Pending")),
        ("tcp", "Programmed", ("False", "Invalid")),
    ],
)
def test_listener_conditions(statuses: dict[StatusKey, Any], listener: str, ctype: str, expected: Any) -> None:
    st = statuses[StatusKey("Gateway", "default", "gw")]
    (lst,) = [x for x in st["listeners"] if x["name"] == listener]
    assert cond(lst["conditions"], ctype) == expected


def test_attached_routes_and_supported_kinds(statuses: dict[StatusKey, Any]) -> None:
    st = statuses[StatusKey("Gateway", "default", "gw")]
    counts = {x["name"]: x["attachedRoutes"] for x in st["listeners"]}
    assert counts == {"http": 4, "tcp": 0, "dup-a": 4, "dup-b": 0, "grpc-only": 0}
    kinds = {x["name"]: x["supportedKinds"] for x in st["listeners"]}
    assert kinds["http"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    assert kinds["grpc-only"] == []


@pytest.mark.parametrize(
    ("route", "gateway", "ctype", "expected"),
    [
        ("missing-backend", "gw", "ResolvedRefs", ("False", "BackendNotFound")),
        ("missing-backend", "gw2", "Accepted", ("True", "Accepted")),
        ("cross-namespace", "gw", "ResolvedRefs", ("False", "RefNotPermitted")),
        ("service-backend", "gw", "ResolvedRefs", ("False", "BackendNotFound")),  # no such Service
        ("wrong-section", "gw", "Accepted", ("False", "NoMatchingParent")),
        ("wrong-section", "gw2", "Accepted", ("True", "Accepted")),
        ("other-namespace", "gw", "Accepted", ("False", "NotAllowedByListeners")),
        ("wrong-host", "only-a", "Accepted", ("False", "NoMatchingListenerHostname")),
        ("bad-match", "gw", "Accepted", ("False", "UnsupportedValue")),
        ("bad-match", "gw", "ResolvedRefs", ("True", "ResolvedRefs")),
    ],
)
def test_route_parent_conditions(
    statuses: dict[StatusKey, Any], route: str, gateway: str, ctype: str, expected: Any
) -> None:
    (st,) = [v for k, v in statuses.items() if k.kind == "HTTPRoute" and k.name == route]
    assert cond(parent(st, gateway), ctype) == expected


def test_foreign_objects_get_no_status(statuses: dict[StatusKey, Any]) -> None:
    assert StatusKey("Gateway", "default", "foreign") not in statuses
    assert StatusKey("GatewayClass", "default", "someone-else") not in statuses
    st = statuses[StatusKey("HTTPRoute", "default", "missing-backend")]
    assert {p["parentRef"]["name"] for p in st["parents"]} == {"gw", "gw2"}  # not the foreign Gateway


def test_missing_secret_and_key_are_named(statuses: dict[StatusKey, Any]) -> None:
    def message(name: str) -> str:
        conds = statuses[StatusKey("AIBackend", "default", name)]["conditions"]
        return next(c["message"] for c in conds if c["type"] == "ResolvedRefs")

    assert "Secret default/missing-secret not found" in message("no-secret")
    assert "Secret default/key has no key 'api-key'" in message("no-key")


@pytest.mark.parametrize(
    ("dataplane", "expected"),
    [
        (None, ("False", "Pending")),
        (status.DataPlane(replicas=2, available_replicas=0), ("False", "Pending")),
        (status.DataPlane(available_replicas=1, address_pending=True), ("False", "AddressNotAssigned")),
        (status.DataPlane(error="forbidden"), ("False", "NoResources")),
        (status.DataPlane(available_replicas=1, addresses=(("IPAddress", "10.0.0.7"),)), ("True", "Programmed")),
    ],
)
def test_gateway_programmed(dataplane: status.DataPlane | None, expected: tuple[str, str]) -> None:
    gw = Resource(
        "gateway.networking.k8s.io/v1",
        "Gateway",
        "gw",
        "default",
        {"metadata": {"generation": 4}, "spec": {"listeners": [{"name": "http", "port": 80}]}},
    )
    st = status.gateway_status(gw, problems=[], attached={"http": 1}, dataplane=dataplane, now=NOW)
    assert cond(st["conditions"], "Programmed") == expected
    assert all(c["observedGeneration"] == 4 for c in st["conditions"])
    listener_programmed = cond(st["listeners"][0]["conditions"], "Programmed")[0]
    assert listener_programmed == (
        "True" if dataplane and dataplane.available_replicas and not dataplane.error else "False"
    )
    if dataplane and dataplane.addresses:
        assert st["addresses"] == [{"type": "IPAddress", "value": "10.0.0.7"}]
    else:
        assert "addresses" not in st


def test_last_transition_time_moves_only_when_status_changes() -> None:
    first = status.conditions([status.Condition("Accepted", True, "Accepted")], previous=None, generation=1, now="t1")
    same = status.conditions(
        [status.Condition("Accepted", True, "Accepted", "new message")], previous=first, generation=2, now="t2"
    )
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["observedGeneration"] == 2
    flipped = status.conditions([status.Condition("Accepted", False, "Invalid")], previous=same, generation=2, now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_route_status_keeps_other_controllers_entries() -> None:
    theirs = {"parentRef": {"name": "x"}, "controllerName": "example.com/other", "conditions": []}
    stale_ours = {"parentRef": {"name": "gw"}, "controllerName": "llmgw.dev/gateway-controller", "conditions": []}
    new = [{"parentRef": {"name": "gw2"}, "controllerName": "llmgw.dev/gateway-controller", "conditions": []}]
    merged = status.merge_route_parents({"parents": [theirs, stale_ours]}, new)
    assert merged == {"parents": [theirs, *new]}


def test_long_messages_are_truncated() -> None:
    problems = [Problem("", "AIBackend default/x", f"spec.f{i}", "m" * 1000) for i in range(100)]
    assert len(status.explain(problems)) > status.MAX_MESSAGE
    (c,) = status.conditions(
        [status.Condition("Accepted", False, "Invalid", status.explain(problems))], previous=None, generation=1, now=NOW
    )
    assert len(c["message"]) == status.MAX_MESSAGE
