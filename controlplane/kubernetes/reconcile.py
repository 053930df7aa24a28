"""Everything the controller wants, computed from the cached objects in one pure function.

`reconcile(resources, ...)` feeds the same `controlplane.gatewayapi.translate`
the file provider feeds, once per Gateway of our class: in a cluster each
Gateway has its own pods and addresses, so two Gateways may both listen on
port 80 (in one standalone process they could not), and each data plane gets
only its own listeners, the backends its routes use, and only those
credentials. One extra translation without any Gateway yields the problems of
objects that do not depend on a parent (AIBackends, route rules and
backendRefs). The result — per-Gateway IR and extproc config, the status of
every object we own a piece of, and the objects to provision — is plain data;
`controller.py` performs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane import extproc_config
from controlplane.gatewayapi import translate
from controlplane.gatewayapi.attach import attach_route
from controlplane.gatewayapi.listeners import CONTROLLER_NAME, GATEWAY_API, gateway_listeners
from controlplane.ir import IR
from controlplane.kubernetes import agw_parameters, provision, status
from controlplane.kubernetes.pool_status import inferenceobjective_status, inferencepool_status, pool_parents
from controlplane.resources import Problem, Resource
from extproc.contract import ExtprocConfig

GATEWAY_ONLY = {"GatewayClass", "Gateway", provision.PARAMS_KIND, provision.AGW_PARAMS_KIND}
BACKEND_KINDS = ("AIBackend", "AgentgatewayBackend")
ROUTE_PARENT_REASONS = ("NoMatchingListenerHostname",)


@dataclass(frozen=True)
class StatusKey:
    kind: str
    namespace: str
    name: str


@dataclass
class GatewayPlan:
    """One Gateway's data plane: what its Envoy and extproc get, and its provisioned objects."""

    gateway: Resource
    ir: IR
    extproc: ExtprocConfig
    objects: list[dict[str, Any]]
    backends: set[str] = field(default_factory=set)  # "<ns>/<name>" of the AIBackends it serves


@dataclass
class Plan:
    gateways: dict[str, GatewayPlan] = field(default_factory=dict)  # by "<ns>/<name>"
    statuses: dict[StatusKey, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # every problem, for the log


def ours(resources: Iterable[Resource]) -> tuple[dict[str, Resource], list[Resource]]:
    """GatewayClasses naming our controller, and the Gateways of those classes."""
    items = list(resources)
    classes = {
        r.name: r
        for r in items
        if r.kind == "GatewayClass" and r.api_version.startswith(GATEWAY_API + "/")
        if r.spec.get("controllerName") == CONTROLLER_NAME
    }
    gateways = [r for r in items if r.kind == "Gateway" and r.spec.get("gatewayClassName") in classes]
    return classes, sorted(gateways, key=lambda g: g.key)


def reconcile(
    resources: Iterable[Resource],
    *,
    settings: provision.Settings,
    observed: Mapping[str, status.DataPlane] | None = None,
    now: str,
) -> Plan:
    """Resources (as cached, status included) -> the Plan. `observed` is per Gateway key."""
    items = list(resources)
    observed = observed or {}
    classes, gateways = ours(items)
    params = {r.key: r for r in items if r.kind == provision.PARAMS_KIND}
    agw_params = {r.key: r for r in items if r.kind == provision.AGW_PARAMS_KIND}
    shared = [r for r in items if r.kind not in GATEWAY_ONLY]
    plan = Plan()

    base = translate(shared, environ={}, services_known=True)
    base_notes: dict[str, list[Problem]] = {}  # InferencePool status reports some notes
    for n in base.notes:
        base_notes.setdefault(n.obj, []).append(n)
    # A policy's problems depend on the Gateways it reaches: they come from each Gateway's translation.
    plan.problems.extend(p for p in base.problems if not _attachment(p) and not _of_policy(p))
    for res in agw_params.values():
        plan.problems.extend(agw_parameters.problems(res))
    by_obj: dict[str, list[Problem]] = {}
    for p in base.problems:
        by_obj.setdefault(p.obj, []).append(p)

    for gc in classes.values():
        problem = provision.class_parameters_problem(gc, params)
        plan.statuses[_key(gc)] = status.gatewayclass_status(gc, problem=problem, previous=_status(gc), now=now)

    route_problems: dict[str, dict[str, list[Problem]]] = {}  # route ref -> gateway key -> problems
    policy_problems: dict[str, dict[str, list[Problem]]] = {}  # policy ref -> gateway key -> problems
    policy_ancestors: dict[str, set[str]] = {}  # policy ref -> Gateways it reaches
    routes = {r.ref: r for r in items if r.kind == "HTTPRoute"}
    for gw in gateways:
        gc = classes[str(gw.spec.get("gatewayClassName"))]
        spec, params_problem = provision.parameters_for(gw, gc, params)
        overlays, overlay_problem = agw_parameters.overlays_for(gw, gc, agw_params)
        params_problem = params_problem or overlay_problem
        result = translate([gc, gw, *shared], environ={}, services_known=True)
        gw_problems = [p for p in result.problems if p.obj == gw.ref]
        plan.problems.extend(gw_problems)
        reached = _policies_reached(result.ir, gw.key)
        for p in result.problems:
            if _of_policy(p) and p.obj in reached:
                policy_problems.setdefault(p.obj, {}).setdefault(gw.key, []).append(p)
                plan.problems.append(p)
        for ref in reached:
            policy_ancestors.setdefault(ref, set()).add(gw.key)
        for p in result.problems:
            if _attachment(p) and _names_gateway(routes.get(p.obj), p, gw.key):
                route_problems.setdefault(p.obj, {}).setdefault(gw.key, []).append(p)
                plan.problems.append(p)
        accepted_listeners = not params_problem and any(lst.gateway == gw.key for lst in result.ir.listeners)
        plan.statuses[_key(gw)] = status.gateway_status(
            gw,
            problems=gw_problems,
            attached=_attached_routes(gw, gc, items),
            dataplane=observed.get(gw.key),
            parameters_problem=params_problem,
            previous=_status(gw),
            now=now,
        )
        if params_problem or not accepted_listeners:
            continue
        ir = gateway_ir(result.ir, gw.key)
        plan.gateways[gw.key] = GatewayPlan(
            gateway=gw,
            ir=ir,
            extproc=extproc_config.build(ir),
            objects=agw_parameters.apply_overlays(
                provision.desired_objects(gw, spec=spec, settings=settings), overlays
            ),
            backends={b.key for b in ir.backends} | {b.key for b in ir.plain_backends},
        )

    gateway_keys = {g.key for g in gateways}
    served = {b for gp in plan.gateways.values() for b in gp.backends}
    accepted_backends = {b.key for b in base.ir.backends} | {b.key for b in base.ir.plain_backends}
    for res in items:
        if res.kind == "HTTPRoute":
            parents = status.route_status(
                res,
                ours=gateway_keys,
                gateway_problems=route_problems.get(res.ref, {}),
                problems=[p for p in by_obj.get(res.ref, []) if not _attachment(p)],
                previous=_status(res),
                now=now,
            )
            if parents or _has_our_parent_entry(res):
                plan.statuses[_key(res)] = status.merge_route_parents(_status(res), parents)
        elif res.kind == "InferencePool":
            pool_status = inferencepool_status(
                res,
                parents=pool_parents(res, routes.values(), gateway_keys),
                problems=by_obj.get(res.ref, []),
                notes=base_notes.get(res.ref, []),
                now=now,
            )
            if pool_status is not None:
                plan.statuses[_key(res)] = pool_status
        elif res.kind == "InferenceObjective":
            objective_status = inferenceobjective_status(
                res, problems=by_obj.get(res.ref, []), notes=base_notes.get(res.ref, []), now=now
            )
            if objective_status is not None:
                plan.statuses[_key(res)] = objective_status
        elif res.kind in status.POLICY_KINDS:
            plan.statuses[_key(res)] = status.policy_status(
                res,
                ancestors=sorted(policy_ancestors.get(res.ref, ())),
                gateway_problems=policy_problems.get(res.ref, {}),
                problems=by_obj.get(res.ref, []),
                previous=_status(res),
                now=now,
            )
        elif res.kind in BACKEND_KINDS:
            plan.statuses[_key(res)] = status.aibackend_status(
                res,
                problems=by_obj.get(res.ref, []),
                accepted=res.key in accepted_backends,
                programmed=res.key in served,
                previous=_status(res),
                now=now,
            )
    return plan


def gateway_ir(ir: IR, gateway: str) -> IR:
    """One Gateway's slice of an IR: its listeners (on their in-pod ports) and the backends they route to."""
    listeners = tuple(
        dataclasses.replace(lst, port=provision.container_port(lst.port))
        for lst in ir.listeners
        if lst.gateway == gateway
    )
    used = {wb.cluster for lst in listeners for vh in lst.virtual_hosts for r in vh.routes for wb in r.backends}
    return dataclasses.replace(
        ir,
        listeners=listeners,
        backends=tuple(b for b in ir.backends if b.cluster in used),
        pools=tuple(p for p in ir.pools if p.cluster in used),
        plain_backends=tuple(b for b in ir.plain_backends if b.cluster in used),
        models=tuple((gw, m) for gw, m in ir.models if gw == gateway),
    )


def referenced(resources: Iterable[Resource]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of the Secrets and ConfigMaps the backends (and Gateways) refer to,
    and of the Services HTTPRoutes send to and InferencePools name as their endpoint pickers.

    The controller keeps only these in its cache: it must not hold every
    Secret of the cluster, and what it holds is what may reach an extproc.
    """
    out: set[tuple[str, str, str]] = set()

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, Mapping):
            ref = node.get("secretRef")
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
                out.add(("Secret", ns, ref["name"]))
            kind, name = node.get("kind"), node.get("name")
            if kind in ("Secret", "ConfigMap") and isinstance(name, str) and node.get("group", "") == "":
                ref_ns = node.get("namespace")
                out.add((str(kind), ref_ns if isinstance(ref_ns, str) and ref_ns else ns, name))
            for value in node.values():
                walk(value, ns)
        elif isinstance(node, list):
            for value in node:
                walk(value, ns)

    for res in resources:
        if res.kind in (*BACKEND_KINDS, "Gateway", "AIPolicy", "AgentgatewayPolicy"):
            walk(res.spec, res.namespace)
        elif res.kind == "InferencePool":  # its endpoint picker's Service
            ref = res.spec.get("endpointPickerRef")
            if (
                isinstance(ref, Mapping)
                and isinstance(ref.get("name"), str)
                and ref.get("kind", "Service") == "Service"
            ):
                out.add(("Service", res.namespace, ref["name"]))
        if res.kind == "Gateway":
            out.update(_certificate_refs(res))
        elif res.kind == "HTTPRoute":
            out.update(_service_refs(res))
    return out


def _certificate_refs(gateway: Resource) -> set[tuple[str, str, str]]:
    """("Secret", namespace, name) of HTTPS listeners' certificateRefs (kind defaults to Secret)."""
    out: set[tuple[str, str, str]] = set()
    listeners = gateway.spec.get("listeners")
    for lst in listeners if isinstance(listeners, list) else []:
        tls = lst.get("tls") if isinstance(lst, Mapping) else None
        refs = tls.get("certificateRefs") if isinstance(tls, Mapping) else None
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, Mapping) and ref.get("kind", "Secret") == "Secret" and isinstance(ref.get("name"), str):
                ns = ref.get("namespace")
                out.add(("Secret", ns if isinstance(ns, str) and ns else gateway.namespace, ref["name"]))
    return out


def _service_refs(route: Resource) -> set[tuple[str, str, str]]:
    """("Service", namespace, name) of a route's Service backendRefs (kind defaults to Service)."""
    out: set[tuple[str, str, str]] = set()
    rules = route.spec.get("rules")
    for rule in rules if isinstance(rules, list) else []:
        refs = rule.get("backendRefs") if isinstance(rule, Mapping) else None
        for ref in refs if isinstance(refs, list) else []:
            if not isinstance(ref, Mapping) or ref.get("group", "") not in ("", "core"):
                continue
            if ref.get("kind", "Service") == "Service" and isinstance(ref.get("name"), str):
                ns = ref.get("namespace")
                out.add(("Service", ns if isinstance(ns, str) and ns else route.namespace, ref["name"]))
    return out


Selector = tuple[str, str, tuple[tuple[str, str], ...]]  # (Secret | ConfigMap, namespace, matchLabels)


def selected(resources: Iterable[Resource]) -> set[Selector]:
    """The label selectors of API key policies (`secretSelector`, `configMapSelector`), in their namespaces.

    Like `referenced`, so the controller caches the Secrets/ConfigMaps they select and no others.
    """
    out: set[Selector] = set()
    for res in resources:
        if res.kind not in status.POLICY_KINDS:
            continue
        traffic = res.spec.get("traffic")
        auth = traffic.get("apiKeyAuthentication") if isinstance(traffic, Mapping) else None
        if not isinstance(auth, Mapping):
            continue
        for key, kind in (("secretSelector", "Secret"), ("configMapSelector", "ConfigMap")):
            sel = auth.get(key)
            labels = sel.get("matchLabels") if isinstance(sel, Mapping) else None
            if isinstance(labels, Mapping) and labels and all(isinstance(v, str) for v in labels.values()):
                out.add((kind, res.namespace, tuple(sorted((str(k), v) for k, v in labels.items()))))
    return out


def _attached_routes(gw: Resource, gc: Resource, items: list[Resource]) -> dict[str, int]:
    """Routes attached per listener name (Gateway status `attachedRoutes`)."""
    listeners, _ = gateway_listeners([gw], {gc.name: gc})
    namespaces = {r.name: {**r.labels, "kubernetes.io/metadata.name": r.name} for r in items if r.kind == "Namespace"}
    counts: dict[str, int] = {}
    for route in items:
        if route.kind != "HTTPRoute":
            continue
        parents, _ = attach_route(route, listeners=listeners, namespaces=namespaces)
        for name in {lst.name for lst, _hosts in parents}:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _of_policy(p: Problem) -> bool:
    return p.obj.startswith(tuple(f"{k} " for k in status.POLICY_KINDS))


def _policies_reached(ir: IR, gateway: str) -> set[str]:
    """Refs ("<Kind> <ns>/<name>") of the policies on Gateway `gateway`'s routes and backends."""
    out: set[str] = set()
    for lst in ir.listeners:
        if lst.gateway != gateway:
            continue
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                if r.policy is not None:
                    out.update(r.policy.sources)
    used = {
        wb.cluster
        for lst in ir.listeners
        if lst.gateway == gateway
        for vh in lst.virtual_hosts
        for r in vh.routes
        for wb in r.backends
    }
    for b in ir.backends:
        if b.policy is not None and b.cluster in used:
            out.update(b.policy.sources)
    return out


def _attachment(p: Problem) -> bool:
    return p.obj.startswith("HTTPRoute ") and (
        p.field.startswith("spec.parentRefs[") or p.reason in ROUTE_PARENT_REASONS
    )


def _names_gateway(route: Resource | None, p: Problem, gateway: str) -> bool:
    """Whether an attachment problem from Gateway `gateway`'s translation is about a parentRef naming it
    (that translation sees no other Gateway, so parentRefs to others fail there by construction)."""
    if route is None:
        return False
    index = status.parent_index(p)
    refs = route.spec.get("parentRefs")
    if index is None or not isinstance(refs, list) or index >= len(refs):
        return False
    return status.parent_gateway(route, refs[index]) == gateway


def _has_our_parent_entry(route: Resource) -> bool:
    parents = status.previous_conditions(_status(route), "parents")
    return isinstance(parents, list) and any(
        isinstance(p, Mapping) and p.get("controllerName") == CONTROLLER_NAME for p in parents
    )


def _status(res: Resource) -> Any:
    return res.body.get("status")


def _key(res: Resource) -> StatusKey:
    return StatusKey(res.kind, res.namespace, res.name)
