"""Problems (from the pure translation) + what was observed of the data plane -> status, as pure functions.

Status is data (DESIGN convention 6): the translation already says what is wrong
with which object, at which field, with a Gateway API reason. This module only
arranges those Problems into the conditions each kind carries — GatewayClass
Accepted; Gateway Accepted/Programmed with per-listener conditions and
addresses; HTTPRoute Accepted/ResolvedRefs per parentRef; AIBackend
Accepted/ResolvedRefs/Programmed — so a user reads the reason in `kubectl get`
and `kubectl describe`. No I/O here; `controller.py` writes what these return,
and only when it differs from what the object already carries.

`lastTransitionTime` changes only when a condition's status changes (the
Kubernetes convention), so recomputing an unchanged status yields an identical
dict and no write.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.gatewayapi.listeners import CONTROLLER_NAME, GATEWAY_API
from controlplane.resources import Problem, Resource

MAX_MESSAGE = 32768
# Route problems that are about references (ResolvedRefs), not the route's own shape (Accepted).
REF_REASONS = ("RefNotPermitted", "InvalidKind", "BackendNotFound", "UnsupportedProtocol")
_PARENT_FIELD = re.compile(r"^spec\.parentRefs\[(\d+)\]")
_PARENT_IN_MESSAGE = re.compile(r"parentRefs\[(\d+)\]")
_LISTENER_FIELD = re.compile(r"^spec\.listeners\[(\d+)\]")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class DataPlane:
    """What the controller observed of a Gateway's provisioned Deployment and Service."""

    replicas: int = 1
    available_replicas: int = 0
    addresses: tuple[tuple[str, str], ...] = ()  # (IPAddress | Hostname, value)
    address_pending: bool = False  # a LoadBalancer Service without an ingress address yet
    error: str = ""  # provisioning failed (e.g. forbidden); Programmed False NoResources


def conditions(new: Sequence[Condition], *, previous: Any, generation: int, now: str) -> list[dict[str, Any]]:
    """metav1.Condition dicts; a condition whose status did not change keeps its lastTransitionTime."""
    prev: dict[str, Mapping[str, Any]] = {}
    if isinstance(previous, list):
        prev = {c["type"]: c for c in previous if isinstance(c, Mapping) and isinstance(c.get("type"), str)}
    out = []
    for c in new:
        status = "True" if c.status else "False"
        old = prev.get(c.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": c.message[:MAX_MESSAGE],
                "observedGeneration": generation,
                "lastTransitionTime": since or now,
            }
        )
    return out


def generation(res: Resource) -> int:
    meta = res.body.get("metadata")
    gen = meta.get("generation") if isinstance(meta, Mapping) else None
    return gen if isinstance(gen, int) else 0


def explain(problems: Sequence[Problem]) -> str:
    """Problems of one object as one message: "field: message; ..." (unique, in order)."""
    seen: dict[str, None] = {}
    for p in problems:
        seen.setdefault(f"{p.field}: {p.message}" if p.field else p.message, None)
    return "; ".join(seen)


def previous_conditions(status: Any, *path: str | int) -> Any:
    node = status
    for key in path:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and len(node) > key else None
        else:
            node = node.get(key) if isinstance(node, Mapping) else None
    return node


# --------------------------------------------------------------------------- GatewayClass


def gatewayclass_status(gc: Resource, *, problem: str = "", previous: Any = None, now: str) -> dict[str, Any]:
    """Accepted True, or False/InvalidParameters when its parametersRef cannot be used."""
    cond = (
        Condition("Accepted", False, "InvalidParameters", problem)
        if problem
        else Condition("Accepted", True, "Accepted", f"handled by {CONTROLLER_NAME}")
    )
    prev = previous_conditions(previous, "conditions")
    return {"conditions": conditions([cond], previous=prev, generation=generation(gc), now=now)}


# --------------------------------------------------------------------------- Gateway


def gateway_status(
    gateway: Resource,
    *,
    problems: Sequence[Problem],
    attached: Mapping[str, int],
    dataplane: DataPlane | None,
    parameters_problem: str = "",
    previous: Any = None,
    now: str,
) -> dict[str, Any]:
    """Gateway conditions, one status entry per listener, and the data plane's addresses.

    `problems` are those the translation reported for this Gateway; `attached`
    counts routes per listener name; `dataplane` is None until provisioning ran.
    """
    gen = generation(gateway)
    raw_listeners = gateway.spec.get("listeners")
    specs = [lst for lst in raw_listeners if isinstance(lst, Mapping)] if isinstance(raw_listeners, list) else []
    by_listener: dict[int, list[Problem]] = {}
    general: list[Problem] = []
    for p in problems:
        m = _LISTENER_FIELD.match(p.field)
        (by_listener.setdefault(int(m.group(1)), []) if m else general).append(p)

    ready = dataplane is not None and not dataplane.error and dataplane.available_replicas > 0
    listeners: list[dict[str, Any]] = []
    invalid: list[str] = []
    for i, spec in enumerate(specs):
        name = str(spec.get("name") or f"listener-{i}")
        mine = by_listener.get(i, [])
        if mine:
            invalid.append(name)
        prev = _previous_listener(previous, name)
        listeners.append(
            {
                "name": name,
                "supportedKinds": _supported_kinds(spec),
                "attachedRoutes": attached.get(name, 0) if not mine else 0,
                "conditions": conditions(
                    _listener_conditions(spec, mine, ready=ready), previous=prev, generation=gen, now=now
                ),
            }
        )

    if parameters_problem:
        accepted = Condition("Accepted", False, "InvalidParameters", parameters_problem)
    elif general:
        accepted = Condition("Accepted", False, "Invalid", explain(general))
    elif specs and len(invalid) == len(specs):
        accepted = Condition("Accepted", False, "ListenersNotValid", f"no listener is valid: {', '.join(invalid)}")
    elif invalid:
        accepted = Condition("Accepted", True, "ListenersNotValid", f"listeners not valid: {', '.join(invalid)}")
    else:
        accepted = Condition("Accepted", True, "Accepted", "")
    programmed = _gateway_programmed(accepted.status, dataplane)
    out: dict[str, Any] = {}
    if dataplane is not None and dataplane.addresses:
        out["addresses"] = [{"type": t, "value": v} for t, v in dataplane.addresses]
    out["conditions"] = conditions(
        [accepted, programmed], previous=previous_conditions(previous, "conditions"), generation=gen, now=now
    )
    out["listeners"] = listeners
    return out


def _gateway_programmed(accepted: bool, dp: DataPlane | None) -> Condition:
    if not accepted:
        return Condition("Programmed", False, "Invalid", "the Gateway is not accepted")
    if dp is None:
        return Condition("Programmed", False, "Pending", "the data plane is being provisioned")
    if dp.error:
        return Condition("Programmed", False, "NoResources", dp.error)
    if dp.available_replicas <= 0:
        return Condition(
            "Programmed",
            False,
            "Pending",
            f"waiting for the data plane: {dp.available_replicas} of {dp.replicas} replicas available",
        )
    if dp.address_pending:
        return Condition("Programmed", False, "AddressNotAssigned", "the LoadBalancer Service has no address yet")
    return Condition("Programmed", True, "Programmed", f"{dp.available_replicas} of {dp.replicas} replicas available")


def _previous_listener(previous: Any, name: str) -> Any:
    listeners = previous_conditions(previous, "listeners")
    if isinstance(listeners, list):
        for lst in listeners:
            if isinstance(lst, Mapping) and lst.get("name") == name:
                return lst.get("conditions")
    return None


def _supported_kinds(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"group": GATEWAY_API, "kind": "HTTPRoute"}] if _admits_http_routes(spec) else []


def _admits_http_routes(spec: Mapping[str, Any]) -> bool:
    allowed = spec.get("allowedRoutes")
    kinds = allowed.get("kinds") if isinstance(allowed, Mapping) else None
    if not isinstance(kinds, list) or not kinds:
        return True
    return any(
        isinstance(k, Mapping) and k.get("kind") == "HTTPRoute" and k.get("group", GATEWAY_API) == GATEWAY_API
        for k in kinds
    )


def _listener_conditions(spec: Mapping[str, Any], problems: Sequence[Problem], *, ready: bool) -> list[Condition]:
    conflict = [p for p in problems if p.reason in ("HostnameConflict", "ProtocolConflict")]
    conflicted = (
        Condition("Conflicted", True, conflict[0].reason, explain(conflict))
        if conflict
        else Condition("Conflicted", False, "NoConflicts", "")
    )
    cert = [p for p in problems if p.reason in ("InvalidCertificateRef", "RefNotPermitted")]
    refs = (
        Condition("ResolvedRefs", False, cert[0].reason, explain(cert))
        if cert
        else Condition("ResolvedRefs", True, "ResolvedRefs", "")
        if _admits_http_routes(spec)
        else Condition("ResolvedRefs", False, "InvalidRouteKinds", "only HTTPRoute is supported")
    )
    if cert and len(cert) == len(problems):
        # Well-formed but its certificate does not resolve (Gateway API: Accepted, not Programmed).
        return [
            Condition("Accepted", True, "Accepted", ""),
            conflicted,
            refs,
            Condition("Programmed", False, "Invalid", "the listener's certificate does not resolve"),
        ]
    if problems:
        reason = problems[0].reason
        if reason in ("Invalid", "HostnameConflict", "ProtocolConflict"):
            reason = "UnsupportedValue"
        return [
            Condition("Accepted", False, reason, explain(problems)),
            conflicted,
            refs,
            Condition("Programmed", False, "Invalid", "the listener is not accepted"),
        ]
    programmed = (
        Condition("Programmed", True, "Programmed", "")
        if ready
        else Condition("Programmed", False, "Pending", "waiting for the data plane")
    )
    return [Condition("Accepted", True, "Accepted", ""), conflicted, refs, programmed]


# --------------------------------------------------------------------------- HTTPRoute


def parent_gateway(route: Resource, ref: Any) -> str | None:
    """ "<ns>/<name>" of the Gateway a parentRef names; None if it is not a Gateway reference."""
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return None
    if ref.get("kind", "Gateway") != "Gateway" or ref.get("group", GATEWAY_API) != GATEWAY_API:
        return None
    return f"{ref.get('namespace') or route.namespace}/{ref['name']}"


def route_status(
    route: Resource,
    *,
    ours: Collection[str],
    gateway_problems: Mapping[str, Sequence[Problem]],
    problems: Sequence[Problem],
    previous: Any = None,
    now: str,
) -> list[dict[str, Any]]:
    """Our entries of `status.parents`: one per parentRef naming a Gateway of our class.

    `gateway_problems[gw]` are the route's problems from the translation of
    Gateway `gw` alone (attachment: NoMatchingParent, NotAllowedByListeners,
    NoMatchingListenerHostname); `problems` are the route's own (rules,
    backendRefs, hostnames), which do not depend on the parent.
    """
    gen = generation(route)
    refs = route.spec.get("parentRefs")
    own_refs = [p for p in problems if p.reason in REF_REASONS]
    own_shape = [p for p in problems if p.reason not in REF_REASONS]
    resolved = (
        Condition("ResolvedRefs", False, own_refs[0].reason, explain(own_refs))
        if own_refs
        else Condition("ResolvedRefs", True, "ResolvedRefs", "")
    )
    out: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        gw = parent_gateway(route, ref)
        if gw is None or gw not in ours:
            continue
        parent_ref = _echo_parent_ref(ref)
        if parent_ref in seen:
            continue
        seen.append(parent_ref)
        attach = [p for p in gateway_problems.get(gw, ()) if _about_parent(p, i)]
        if attach:
            accepted = Condition("Accepted", False, attach[0].reason, explain(attach))
        elif own_shape:
            accepted = Condition("Accepted", False, "UnsupportedValue", explain(own_shape))
        else:
            accepted = Condition("Accepted", True, "Accepted", "")
        prev = _previous_parent(previous, parent_ref)
        out.append(
            {
                "parentRef": parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions([accepted, resolved], previous=prev, generation=gen, now=now),
            }
        )
    return out


def merge_route_parents(previous: Any, ours: list[dict[str, Any]]) -> dict[str, Any]:
    """The route's whole status: other controllers' parent entries kept as they are, ours replaced."""
    parents = previous_conditions(previous, "parents")
    others = [
        p
        for p in (parents if isinstance(parents, list) else [])
        if isinstance(p, Mapping) and p.get("controllerName") != CONTROLLER_NAME
    ]
    return {"parents": [*others, *ours]}


def parent_index(p: Problem) -> int | None:
    """Which parentRef an attachment problem is about (from its field, or the hostname message)."""
    m = _PARENT_FIELD.match(p.field)
    if m:
        return int(m.group(1))
    if p.reason == "NoMatchingListenerHostname":
        found = _PARENT_IN_MESSAGE.search(p.message)
        return int(found.group(1)) if found else None
    return None


def _about_parent(p: Problem, index: int) -> bool:
    found = parent_index(p)
    return found == index or (found is None and p.reason == "NoMatchingListenerHostname")


def _echo_parent_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"group": ref.get("group", GATEWAY_API), "kind": ref.get("kind", "Gateway")}
    for key in ("namespace", "name", "sectionName", "port"):
        if ref.get(key) is not None:
            out[key] = ref[key]
    return out


def _previous_parent(previous: Any, parent_ref: Mapping[str, Any]) -> Any:
    parents = previous_conditions(previous, "parents")
    for p in parents if isinstance(parents, list) else []:
        if (
            isinstance(p, Mapping)
            and p.get("controllerName") == CONTROLLER_NAME
            and _echo_parent_ref(p.get("parentRef") or {}) == parent_ref
        ):
            return p.get("conditions")
    return None


# --------------------------------------------------------------------------- AIBackend


def aibackend_status(
    backend: Resource,
    *,
    problems: Sequence[Problem],
    accepted: bool,
    programmed: bool,
    previous: Any = None,
    now: str,
) -> dict[str, Any]:
    """Accepted (usable: in the IR), ResolvedRefs (Secrets/ConfigMaps and their keys), Programmed (served).

    A missing Secret or key is named in the message, e.g. "Secret default/openai-key not found"
    or "Secret default/openai-key has no key 'Authorization'" (the translation's own words).
    """
    refs = [p for p in problems if _is_ref_problem(p)]
    shape = [p for p in problems if not _is_ref_problem(p)]
    if refs:
        reason = "RefNotFound" if refs[0].reason in ("BackendNotFound", "Invalid") else refs[0].reason
        resolved = Condition("ResolvedRefs", False, reason, explain(refs))
    else:
        resolved = Condition("ResolvedRefs", True, "ResolvedRefs", "")
    if accepted:
        accept = Condition("Accepted", True, "Accepted", explain(problems))
    elif shape:
        reason = shape[0].reason if shape[0].reason not in ("Invalid",) else "Invalid"
        accept = Condition("Accepted", False, reason, explain(shape + refs))
    else:
        accept = Condition("Accepted", False, resolved.reason if refs else "Invalid", explain(refs))
    if not accepted:
        prog = Condition("Programmed", False, "Invalid", f"the {backend.kind} is not accepted")
    elif programmed:
        prog = Condition("Programmed", True, "Programmed", "")
    else:
        prog = Condition("Programmed", False, "NotReferenced", "no HTTPRoute of an llmgw Gateway uses it")
    prev = previous_conditions(previous, "conditions")
    return {"conditions": conditions([accept, resolved, prog], previous=prev, generation=generation(backend), now=now)}


def _is_ref_problem(p: Problem) -> bool:
    return "secretRef" in p.field or "CertificateRefs" in p.field or p.reason in ("RefNotPermitted",)


# --------------------------------------------------------------------------- AIPolicy / AgentgatewayPolicy

POLICY_KINDS = ("AIPolicy", "AgentgatewayPolicy")


def policy_status(
    policy: Resource,
    *,
    ancestors: Sequence[str],
    gateway_problems: Mapping[str, Sequence[Problem]],
    problems: Sequence[Problem],
    previous: Any = None,
    now: str,
) -> dict[str, Any]:
    """Gateway API PolicyStatus: one `ancestors` entry per Gateway of ours the policy reaches.

    Accepted per ancestor: False `Conflicted` when another (older) policy at the
    same attachment point wins a field of it there; otherwise True, its message
    naming what llmgw does not act on (unsupported fields). A policy that reaches
    no Gateway gets one entry for its first target: Accepted False `TargetNotFound`.
    `gateway_problems[gw]` are the policy's problems from Gateway `gw`'s
    translation; `problems` the rest (no Gateway), used when it reaches none.
    """
    gen = generation(policy)
    previous_ancestors = previous_conditions(previous, "ancestors")
    entries: list[tuple[dict[str, Any], Condition]] = []
    for gw in ancestors:
        found = gateway_problems.get(gw, ())
        conflicted = [p for p in found if p.reason == "Conflicted"]
        if conflicted:
            accepted = Condition("Accepted", False, "Conflicted", explain(conflicted))
        else:
            accepted = Condition("Accepted", True, "Accepted", explain([p for p in found if p.reason != "Conflicted"]))
        ns, name = gw.split("/", 1)
        entries.append(({"group": GATEWAY_API, "kind": "Gateway", "namespace": ns, "name": name}, accepted))
    if not entries:
        missing = [p for p in problems if p.reason == "TargetNotFound"] or list(problems)
        target = _first_target(policy)
        why = explain(missing) or "no Gateway of llmgw serves any target of this policy"
        entries.append((target, Condition("Accepted", False, "TargetNotFound", why)))
    out = []
    for ref, cond in entries:
        prev = None
        if isinstance(previous_ancestors, list):
            prev = next(
                (
                    a.get("conditions")
                    for a in previous_ancestors
                    if isinstance(a, Mapping) and a.get("ancestorRef") == ref
                ),
                None,
            )
        out.append(
            {
                "ancestorRef": ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions([cond], previous=prev, generation=gen, now=now),
            }
        )
    others = [
        a
        for a in (previous_ancestors if isinstance(previous_ancestors, list) else [])
        if isinstance(a, Mapping) and a.get("controllerName") != CONTROLLER_NAME
    ]
    return {"ancestors": [*others, *out]}


def _first_target(policy: Resource) -> dict[str, Any]:
    for key in ("targetRefs", "targetSelectors"):
        refs = policy.spec.get(key)
        if isinstance(refs, list) and refs and isinstance(refs[0], Mapping):
            ref = refs[0]
            out = {"group": str(ref.get("group", "")), "kind": str(ref.get("kind", "")), "namespace": policy.namespace}
            if isinstance(ref.get("name"), str):
                out["name"] = ref["name"]
            if isinstance(ref.get("sectionName"), str):
                out["sectionName"] = ref["sectionName"]
            return out
    return {"group": "", "kind": "", "namespace": policy.namespace, "name": ""}
