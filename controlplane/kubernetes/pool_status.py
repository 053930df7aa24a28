"""InferencePool status (GIE v1.6.0): one entry per parent Gateway of ours, Accepted and ResolvedRefs.

A Gateway of ours is a parent of a pool when an HTTPRoute naming that Gateway in
its parentRefs has a backendRef to the pool. Our entries are matched by
`controllerName`; other controllers' entries are kept as they are, and ours for
Gateways that no longer reference the pool are removed (the implementer's
guide's shared ownership model).

Conditions: Accepted True/Accepted (False/NotSupportedByParent when llmgw
cannot use the pool's spec; True with the note when it has no
endpointPickerRef); ResolvedRefs True/ResolvedRefs, or False/InvalidExtensionRef
when the picker's Service does not resolve.

InferenceObjective status (its `conditions`, type Accepted) belongs to whoever acts on the
objective: llmgw writes it for objectives of pools it picks for (no `endpointPickerRef`),
True/Accepted (the message names any field llmgw does not act on: the priority still
applies), or False with the reason it is not used (NotFound: no such pool; Invalid: no
integer priority). An objective of a pool with its own endpoint picker is that picker's to
report on: llmgw leaves its status alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controlplane.gatewayapi.listeners import CONTROLLER_NAME, GATEWAY_API
from controlplane.gatewayapi.pools import INFERENCE_GROUP, POOL_KIND, REASON_INVALID_EXTENSION_REF
from controlplane.kubernetes.status import Condition, conditions, explain, generation, parent_gateway
from controlplane.resources import Problem, Resource

REASON_NOT_SUPPORTED = "NotSupportedByParent"


def pool_parents(pool: Resource, routes: Iterable[Resource], gateways: set[str]) -> list[str]:
    """Keys of our Gateways that route to `pool` (through some HTTPRoute attached to them), sorted."""
    out: set[str] = set()
    for route in routes:
        rules = route.spec.get("rules")
        refs = [
            ref
            for rule in (rules if isinstance(rules, list) else [])
            if isinstance(rule, Mapping)
            for ref in (rule.get("backendRefs") or [])
            if isinstance(ref, Mapping)
        ]
        if not any(_names_pool(route, ref, pool) for ref in refs):
            continue
        parents = route.spec.get("parentRefs")
        for parent in parents if isinstance(parents, list) else []:
            gw = parent_gateway(route, parent)
            if gw in gateways:
                out.add(gw)
    return sorted(out)


def _names_pool(route: Resource, ref: Mapping[str, Any], pool: Resource) -> bool:
    return (
        ref.get("group") == INFERENCE_GROUP
        and ref.get("kind") == POOL_KIND
        and ref.get("name") == pool.name
        and (ref.get("namespace") or route.namespace) == pool.namespace
    )


def inferencepool_status(
    pool: Resource, *, parents: Sequence[str], problems: Sequence[Problem], notes: Sequence[Problem], now: str
) -> dict[str, Any] | None:
    """The pool's whole status (None: nothing of ours to write and nothing of ours to remove)."""
    previous = pool.body.get("status")
    old = previous.get("parents") if isinstance(previous, Mapping) else None
    old_parents = [p for p in (old if isinstance(old, list) else []) if isinstance(p, Mapping)]
    others = [p for p in old_parents if p.get("controllerName") != CONTROLLER_NAME]
    if not parents and len(others) == len(old_parents):
        return None
    refs = [p for p in problems if p.reason == REASON_INVALID_EXTENSION_REF]
    shape = [p for p in problems if p.reason != REASON_INVALID_EXTENSION_REF]
    accepted = (
        Condition("Accepted", False, REASON_NOT_SUPPORTED, explain(shape))
        if shape
        else Condition("Accepted", True, "Accepted", explain(notes))
    )
    resolved = (
        Condition("ResolvedRefs", False, REASON_INVALID_EXTENSION_REF, explain(refs))
        if refs
        else Condition("ResolvedRefs", True, "ResolvedRefs", "")
    )
    ours = []
    for key in parents:
        ns, name = key.split("/", 1)
        parent_ref = {"group": GATEWAY_API, "kind": "Gateway", "namespace": ns, "name": name}
        prev = next(
            (
                p.get("conditions")
                for p in old_parents
                if p.get("controllerName") == CONTROLLER_NAME and p.get("parentRef") == parent_ref
            ),
            None,
        )
        ours.append(
            {
                "parentRef": parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions([accepted, resolved], previous=prev, generation=generation(pool), now=now),
            }
        )
    return {**(previous if isinstance(previous, Mapping) else {}), "parents": [*others, *ours]}


def inferenceobjective_status(
    objective: Resource, *, problems: Sequence[Problem], notes: Sequence[Problem], now: str
) -> dict[str, Any] | None:
    """The objective's whole status (None: not ours to write, its pool has its own endpoint picker)."""
    if notes:
        return None
    previous = objective.body.get("status")
    old = previous.get("conditions") if isinstance(previous, Mapping) else None
    # A field llmgw does not act on is named, but the objective's priority still applies: Accepted.
    blocking = [p for p in problems if p.reason != "Unsupported"]
    accepted = (
        Condition("Accepted", False, blocking[0].reason, explain(blocking))
        if blocking
        else Condition("Accepted", True, "Accepted", explain(problems))
    )
    return {
        **(previous if isinstance(previous, Mapping) else {}),
        "conditions": conditions([accepted], previous=old, generation=generation(objective), now=now),
    }
