"""Policy attachment: parsed policies + what they target -> the effective policy of each route and backend.

Precedence (agentgateway's, which is Gateway API's GEP-713 "more specific
wins"): a `traffic` policy at an HTTPRoute rule beats one at its HTTPRoute,
which beats one at the Gateway listener, which beats one at the Gateway;
field by field, where a field (`apiKeyAuthentication`, `jwtAuthentication`,
`rateLimit`) is replaced whole, never merged inside. A policy with
`strategy.inheritance: Override` keeps every more specific policy out.
Two policies at one attachment point that set the same field: the oldest
(`creationTimestamp`, then namespace/name) wins, the other gets a `Conflicted`
problem for that field there. A target that does not exist is `TargetNotFound`.

`backend` policies attach to AI backends (AIBackend / AgentgatewayBackend)
and land on the BackendIR. Pure; no Envoy and no extproc types.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from controlplane.gatewayapi.listeners import GatewayListener
from controlplane.gatewayapi.policies import ParsedPolicy, manifest_name, overlay, set_fields
from controlplane.gatewayapi.policy_apikey import policy_id as api_key_policy_id
from controlplane.gatewayapi.policy_jwt import policy_id as jwt_policy_id
from controlplane.ir import BackendPolicyIR, RoutePolicyIR
from controlplane.resources import Problem, Resource

# Attachment points of traffic policies, least specific first.
LEVELS = ("Gateway", "Listener", "HTTPRoute", "Rule")
CONFLICTED = "Conflicted"
TARGET_NOT_FOUND = "TargetNotFound"
_P = TypeVar("_P", RoutePolicyIR, BackendPolicyIR)

AttachKey = tuple[str, str, str]  # (level, "<ns>/<name>", section or "")


@dataclass
class Attachments:
    """Every policy's targets resolved, with conflicts settled per attachment point."""

    traffic: dict[AttachKey, RoutePolicyIR] = field(default_factory=dict)
    override: dict[AttachKey, bool] = field(default_factory=dict)
    backend: dict[str, BackendPolicyIR] = field(default_factory=dict)  # backend key -> policy
    problems: list[Problem] = field(default_factory=list)
    # policy ref -> the attachment points it reached (for status: Accepted when non-empty)
    attached: dict[str, list[AttachKey]] = field(default_factory=dict)

    def route_policy(self, *, gateway: str, listener: str, route: str, rule: str | None) -> RoutePolicyIR | None:
        """The effective traffic policy of one rule of `route` served on `listener` of `gateway`."""
        keys: list[AttachKey] = [("Gateway", gateway, ""), ("Listener", gateway, listener), ("HTTPRoute", route, "")]
        if rule:
            keys.append(("Rule", route, rule))
        for i, key in enumerate(keys):  # an Override policy keeps the more specific ones out
            if self.override.get(key):
                keys = keys[: i + 1]
                break
        effective: RoutePolicyIR | None = None
        for key in keys:
            part = self.traffic.get(key)
            if part is not None:
                effective = part if effective is None else overlay(effective, part)
        return effective


def resolve(
    policies: Sequence[ParsedPolicy],
    *,
    listeners: Sequence[GatewayListener],
    gateways: Iterable[Resource],
    routes: Iterable[Resource],
    backends: Mapping[str, object],
) -> Attachments:
    """Resolve targets of every policy; `backends`: the keys of valid AI backends."""
    out = Attachments()
    gateway_keys = {g.key for g in gateways}
    listener_names = {(lst.gateway.key, lst.name) for lst in listeners}
    route_rules = {r.key: _rule_names(r) for r in routes}
    by_point: dict[AttachKey, list[ParsedPolicy]] = {}
    for pol in policies:
        out.attached.setdefault(pol.source, [])
        for target in pol.targets:
            key = f"{pol.res.namespace}/{target.name}"
            point, missing = _point(target.level, key, target.section, gateway_keys, listener_names, route_rules)
            if missing:
                out.problems.append(Problem(pol.res.file, pol.res.ref, target.fld, missing, TARGET_NOT_FOUND))
                continue
            if target.level == "Backend" and key not in backends:
                out.problems.append(
                    Problem(pol.res.file, pol.res.ref, target.fld, f"backend {key} not found", TARGET_NOT_FOUND)
                )
                continue
            if target.level != "Backend" and pol.traffic is None:
                continue  # a backend-only policy on a Gateway/route: reported by the parser
            if target.level == "Backend" and pol.traffic is not None:
                out.problems.append(
                    Problem(
                        pol.res.file,
                        pol.res.ref,
                        target.fld,
                        "traffic policies attach to Gateways, listeners, HTTPRoutes and rules, not backends",
                    )
                )
                if pol.backend is None:
                    continue
            at_point = by_point.setdefault(point, [])
            if pol not in at_point:
                at_point.append(pol)
            out.attached[pol.source].append(point)
    for point, attached in sorted(by_point.items()):
        attached.sort(key=lambda p: p.order)
        if point[0] == "Backend":
            backend = [(p, p.backend) for p in attached if p.backend is not None]
            out.backend[point[1]] = _settle(point, backend, out.problems) or BackendPolicyIR()
            continue
        traffic = [(p, p.traffic) for p in attached if p.traffic is not None]
        settled = _settle(point, traffic, out.problems)
        if settled is not None:
            out.traffic[point] = settled
        out.override[point] = any(p.override for p in attached)
    return out


def _settle(point: AttachKey, pairs: list[tuple[ParsedPolicy, _P]], problems: list[Problem]) -> _P | None:
    """One attachment point: the oldest policy that sets a field wins it; the others are Conflicted."""
    if not pairs:
        return None
    winner_of: dict[str, str] = {}
    result: _P | None = None
    for pol, part in pairs:
        for f in set_fields(part):
            if f in winner_of:
                problems.append(
                    Problem(
                        pol.res.file,
                        pol.res.ref,
                        "spec",
                        f"{manifest_name(part, f)} at {_describe(point)} is already set by {winner_of[f]} "
                        "(older), which wins",
                        CONFLICTED,
                    )
                )
        free = {f for f in set_fields(part) if f not in winner_of}
        winner_of.update(dict.fromkeys(free, pol.source))
        mine = _only(part, free)
        result = mine if result is None else overlay(result, mine)
    return result


def _only(part: _P, keep: set[str]) -> _P:
    cleared: dict[str, Any] = {f: None for f in set_fields(part) if f not in keep}
    return replace(part, **cleared)


def _point(
    level: str,
    key: str,
    section: str | None,
    gateway_keys: set[str],
    listener_names: set[tuple[str, str]],
    route_rules: Mapping[str, set[str]],
) -> tuple[AttachKey, str]:
    """The attachment point of a target, and why it is missing ("" when it exists)."""
    if level == "Gateway":
        if key not in gateway_keys:
            return ("Gateway", key, ""), f"Gateway {key} not found"
        if section is None:
            return ("Gateway", key, ""), ""
        if (key, section) not in listener_names:
            return ("Listener", key, section), f"Gateway {key} has no valid listener {section!r}"
        return ("Listener", key, section), ""
    if level == "HTTPRoute":
        if key not in route_rules:
            return ("HTTPRoute", key, ""), f"HTTPRoute {key} not found"
        if section is None:
            return ("HTTPRoute", key, ""), ""
        if section not in route_rules[key]:
            return ("Rule", key, section), f"HTTPRoute {key} has no rule named {section!r}"
        return ("Rule", key, section), ""
    return ("Backend", key, ""), ""


def _rule_names(route: Resource) -> set[str]:
    rules = route.spec.get("rules")
    if not isinstance(rules, list):
        return set()
    return {r["name"] for r in rules if isinstance(r, Mapping) and isinstance(r.get("name"), str)}


def rule_name(route: Resource, index: int) -> str | None:
    """`spec.rules[index].name` of an HTTPRoute (the sectionName a policy targets a rule by)."""
    rules = route.spec.get("rules")
    if isinstance(rules, list) and 0 <= index < len(rules) and isinstance(rules[index], Mapping):
        name = rules[index].get("name")
        return name if isinstance(name, str) else None
    return None


def _describe(point: AttachKey) -> str:
    level, key, section = point
    return f"{level} {key}" + (f" ({section})" if section else "")


def authn_id(policy: RoutePolicyIR | None) -> str | None:
    """The id of a route's authentication (API key and JWT parts), None when it has none."""
    if policy is None or not policy.authenticates:
        return None
    export = policy.caller_export
    parts = [
        api_key_policy_id(policy.api_key) if policy.api_key else "",
        jwt_policy_id(policy.jwt) if policy.jwt else "",
        repr((export.upstream_headers, export.metric_labels)) if export else "",
    ]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]
