"""AIPolicy (llmgw.dev) and agentgateway's AgentgatewayPolicy -> parsed policies with their targets.

One parse per policy object: its targets (`targetRefs`, `targetSelectors`),
its `strategy.inheritance`, and the parts llmgw acts on as partial IR
(`RoutePolicyIR` for `traffic`, `BackendPolicyIR` for `backend`). Which
routes and backends a policy reaches, and precedence, is `policy_attach.py`.

Every field is acted upon or reported: a field llmgw does not implement is a
Problem "... is not supported by llmgw" naming it (reason `Unsupported`), the
rest of the policy still applies. `traffic.rateLimit` is parsed by
`policy_ratelimit.py` and `backend.ai` by `policy_ai.py`, one call each, so
those features grow in their own modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from controlplane.gatewayapi import policy_ai, policy_ratelimit
from controlplane.gatewayapi.filters import header_name_problem
from controlplane.gatewayapi.listeners import GATEWAY_API
from controlplane.gatewayapi.policy_apikey import parse_api_key_authentication
from controlplane.gatewayapi.policy_jwt import parse_jwt_authentication
from controlplane.ir import BackendPolicyIR, CallerExportIR, RoutePolicyIR
from controlplane.resources import Problem, Resource

POLICY_KINDS = {
    ("llmgw.dev/v1alpha1", "AIPolicy"),
    ("agentgateway.dev/v1alpha1", "AgentgatewayPolicy"),
}
UNSUPPORTED = "Unsupported"
_P = TypeVar("_P", RoutePolicyIR, BackendPolicyIR)

# Target kinds llmgw resolves: (group, kind) -> level name. Levels, least specific first, are
# policy_attach.LEVELS; a sectionName narrows a Gateway to a listener and an HTTPRoute to a rule.
TARGET_KINDS = {
    (GATEWAY_API, "Gateway"): "Gateway",
    (GATEWAY_API, "HTTPRoute"): "HTTPRoute",
    ("llmgw.dev", "AIBackend"): "Backend",
    ("agentgateway.dev", "AgentgatewayBackend"): "Backend",
}
# Kinds agentgateway accepts that llmgw has no object for.
_FOREIGN_TARGETS = {"GRPCRoute", "ListenerSet", "InferencePool", "Service"}

_SPEC_FIELDS = {"targetRefs", "targetSelectors", "strategy", "traffic", "frontend", "backend"}
# agentgateway's Traffic fields llmgw does not act on (yet).
_TRAFFIC_UNSUPPORTED = {
    "transformation",
    "extProc",
    "extAuth",
    "cors",
    "csrf",
    "headerModifiers",
    "hostRewrite",
    "timeouts",
    "retry",
    "authorization",
    "basicAuthentication",
    "directResponse",
    "buffer",
    "delay",
}
_TRAFFIC_SUPPORTED = {"phase", "apiKeyAuthentication", "jwtAuthentication", "rateLimit", "callerIdentity"}
CALLER_FIELDS = ("user", "team", "tenant", "key_id")  # extproc.metrics.CALLER_FIELDS
_BACKEND_UNSUPPORTED = {"tcp", "tls", "http", "tunnel", "auth", "mcp", "transformation", "health", "extAuth"}


def is_policy(res: Resource) -> bool:
    return (res.api_version, res.kind) in POLICY_KINDS


@dataclass(frozen=True)
class Target:
    """One resolved target reference: `level` is Gateway | HTTPRoute | Backend (before sectionName)."""

    level: str
    name: str
    section: str | None
    fld: str  # where it was written ("spec.targetRefs[0]")


@dataclass
class ParsedPolicy:
    res: Resource
    targets: list[Target] = field(default_factory=list)
    traffic: RoutePolicyIR | None = None  # None: no `traffic` section
    backend: BackendPolicyIR | None = None  # None: no `backend` section
    override: bool = False  # strategy.inheritance: Override
    problems: list[Problem] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.res.ref

    @property
    def order(self) -> tuple[str, str]:
        """Conflict order at one attachment point: the oldest wins, then by namespace/name."""
        return (self.res.creation or "~", self.res.key)


def parse_policy(
    res: Resource,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    secret_resources: Sequence[Resource],
    configmaps: Mapping[str, Mapping[str, str]],
    configmap_resources: Sequence[Resource],
    labelled: Mapping[str, Sequence[Resource]],
) -> ParsedPolicy:
    """One policy object; `labelled`: level -> the objects `targetSelectors` may select."""
    out = ParsedPolicy(res)

    def fail(fld: str, message: str, reason: str = "Invalid") -> None:
        out.problems.append(Problem(res.file, res.ref, fld, message, reason))

    spec = res.spec
    if not isinstance(res.body.get("spec"), Mapping):
        fail("spec", "is required (a mapping)")
        return out
    for key in spec:
        if key not in _SPEC_FIELDS:
            fail(f"spec.{key}", f"is not a field of {res.kind}")
    _targets(out, spec, labelled, fail)
    strategy = spec.get("strategy")
    if strategy is not None:
        inheritance = strategy.get("inheritance") if isinstance(strategy, Mapping) else None
        if not isinstance(strategy, Mapping) or set(strategy) - {"inheritance"}:
            fail("spec.strategy", "only `inheritance` (Default | Override) is read")
        if inheritance not in (None, "Default", "Override"):
            fail("spec.strategy.inheritance", f"must be Default or Override, not {inheritance!r}")
        out.override = inheritance == "Override"
    if "frontend" in spec:
        fail("spec.frontend", "frontend policies are not supported by llmgw", UNSUPPORTED)
    if "traffic" in spec:
        out.traffic = _traffic(out, spec["traffic"], secrets, secret_resources, configmaps, configmap_resources, fail)
    if "backend" in spec:
        out.backend = _backend(out, spec["backend"], secrets, fail)
    if "traffic" not in spec and "backend" not in spec and "frontend" not in spec:
        fail("spec", "needs traffic or backend settings")
    if out.override and out.traffic is None:
        fail("spec.strategy.inheritance", "may only be set on traffic policies")
    return out


def _targets(out: ParsedPolicy, spec: Mapping[str, Any], labelled: Mapping[str, Sequence[Resource]], fail: Any) -> None:
    refs, selectors = spec.get("targetRefs"), spec.get("targetSelectors")
    if (refs is None) == (selectors is None):
        fail("spec", "needs exactly one of targetRefs and targetSelectors")
        return
    items = refs if refs is not None else selectors
    name = "targetRefs" if refs is not None else "targetSelectors"
    if not isinstance(items, list) or not items:
        fail(f"spec.{name}", "must be a non-empty list")
        return
    for i, ref in enumerate(items):
        fld = f"spec.{name}[{i}]"
        if not isinstance(ref, Mapping):
            fail(fld, "must be a mapping (group, kind, name or matchLabels, optional sectionName)")
            continue
        group, kind = ref.get("group", ""), ref.get("kind")
        level = TARGET_KINDS.get((group, kind)) if isinstance(group, str) and isinstance(kind, str) else None
        if level is None:
            if isinstance(kind, str) and kind in _FOREIGN_TARGETS:
                fail(f"{fld}.kind", f"{kind} targets are not supported by llmgw", UNSUPPORTED)
            else:
                fail(f"{fld}.kind", f"{group or 'core'}/{kind} is not a policy target kind", "InvalidKind")
            continue
        if ref.get("port") is not None:
            fail(f"{fld}.port", "port targets (frontend policies) are not supported by llmgw", UNSUPPORTED)
            continue
        section = ref.get("sectionName")
        if section is not None and (not isinstance(section, str) or not section):
            fail(f"{fld}.sectionName", "must be a non-empty string")
            continue
        if level == "Backend" and section is not None:
            fail(f"{fld}.sectionName", "targeting one provider of a backend is not supported by llmgw", UNSUPPORTED)
            continue
        if refs is not None:
            target_name = ref.get("name")
            if not isinstance(target_name, str) or not target_name:
                fail(f"{fld}.name", "is required (a string)")
                continue
            out.targets.append(Target(level, target_name, section, fld))
            continue
        labels = ref.get("matchLabels")
        if not isinstance(labels, Mapping):
            fail(f"{fld}.matchLabels", "is required (a mapping of label to value)")
            continue
        for obj in labelled.get(level, ()):
            same_ns = (obj.kind == kind or level == "Backend") and obj.namespace == out.res.namespace
            if same_ns and all(obj.labels.get(k) == v for k, v in labels.items()):
                out.targets.append(Target(level, obj.name, section, fld))


def _traffic(
    out: ParsedPolicy,
    raw: Any,
    secrets: Mapping[str, Mapping[str, str]],
    secret_resources: Sequence[Resource],
    configmaps: Mapping[str, Mapping[str, str]],
    configmap_resources: Sequence[Resource],
    fail: Any,
) -> RoutePolicyIR:
    policy = RoutePolicyIR(sources=(out.source,))
    if not isinstance(raw, Mapping):
        fail("spec.traffic", "must be a mapping")
        return policy
    for key in raw:
        if key in _TRAFFIC_UNSUPPORTED:
            fail(f"spec.traffic.{key}", "is not supported by llmgw", UNSUPPORTED)
        elif key not in _TRAFFIC_SUPPORTED:
            fail(f"spec.traffic.{key}", "is not a field of traffic")
    phase = raw.get("phase")
    if phase not in (None, "PostRouting", "PreRouting"):
        fail("spec.traffic.phase", f"must be PreRouting or PostRouting, not {phase!r}")
    elif phase == "PreRouting":
        fail(
            "spec.traffic.phase",
            "PreRouting is not supported by llmgw: the policy applies after routing (PostRouting)",
            UNSUPPORTED,
        )
    res = out.res
    if "apiKeyAuthentication" in raw:
        api_key, problems = parse_api_key_authentication(
            raw["apiKeyAuthentication"],
            policy=res,
            fld="spec.traffic.apiKeyAuthentication",
            secrets=secrets,
            secret_resources=secret_resources,
            configmaps=configmaps,
            configmap_resources=configmap_resources,
        )
        out.problems.extend(problems)
        policy = replace(policy, api_key=api_key)
    if "jwtAuthentication" in raw:
        jwt, problems = parse_jwt_authentication(
            raw["jwtAuthentication"], policy=res, fld="spec.traffic.jwtAuthentication", secrets=secrets
        )
        out.problems.extend(problems)
        policy = replace(policy, jwt=jwt)
    if "callerIdentity" in raw:
        if res.kind != "AIPolicy":
            fail("spec.traffic.callerIdentity", f"is an llmgw extension: use an AIPolicy, not {res.kind}")
        else:
            policy = replace(policy, caller_export=_caller_export(raw["callerIdentity"], fail))
    if "rateLimit" in raw:
        part, problems = policy_ratelimit.parse_rate_limit(raw["rateLimit"], policy=res, fld="spec.traffic.rateLimit")
        out.problems.extend(problems)
        policy = overlay(policy, part)
    return policy


def _caller_export(raw: Any, fail: Any) -> CallerExportIR | None:
    """`traffic.callerIdentity` {upstreamHeaders: {field: header}, metricLabels: [field]} (llmgw extension)."""
    fld = "spec.traffic.callerIdentity"
    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping (upstreamHeaders, metricLabels)")
        return None
    for key in set(raw) - {"upstreamHeaders", "metricLabels"}:
        fail(f"{fld}.{key}", "is not a field of callerIdentity")
    headers: list[tuple[str, str]] = []
    raw_headers = raw.get("upstreamHeaders", {})
    if not isinstance(raw_headers, Mapping):
        fail(f"{fld}.upstreamHeaders", "must map identity fields (user, team, tenant, key_id) to header names")
        raw_headers = {}
    for name, header in raw_headers.items():
        if name not in CALLER_FIELDS:
            fail(f"{fld}.upstreamHeaders.{name}", f"must be one of {', '.join(CALLER_FIELDS)}")
        elif why := header_name_problem(header):
            fail(f"{fld}.upstreamHeaders.{name}", why)
        else:
            headers.append((str(name), str(header).lower()))
    labels = raw.get("metricLabels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and x in CALLER_FIELDS for x in labels):
        fail(f"{fld}.metricLabels", f"must be a list of {', '.join(CALLER_FIELDS)}")
        labels = []
    return CallerExportIR(upstream_headers=tuple(sorted(headers)), metric_labels=tuple(dict.fromkeys(labels)))


def _backend(out: ParsedPolicy, raw: Any, secrets: Mapping[str, Mapping[str, str]], fail: Any) -> BackendPolicyIR:
    policy = BackendPolicyIR(sources=(out.source,))
    if not isinstance(raw, Mapping):
        fail("spec.backend", "must be a mapping")
        return policy
    for key in raw:
        if key in _BACKEND_UNSUPPORTED:
            fail(f"spec.backend.{key}", "is not supported by llmgw in a policy", UNSUPPORTED)
        elif key != "ai":
            fail(f"spec.backend.{key}", "is not a field of backend")
    if "ai" in raw:
        part, problems = policy_ai.parse_backend_ai(raw["ai"], policy=out.res, fld="spec.backend.ai", secrets=secrets)
        out.problems.extend(problems)
        policy = overlay(policy, part)
    if any(t.level != "Backend" for t in out.targets):
        fail(
            "spec.backend",
            "llmgw attaches backend policies to AIBackend/AgentgatewayBackend targets only; "
            "for Gateway and HTTPRoute targets they are not supported",
            UNSUPPORTED,
        )
    return policy


def overlay(base: _P, top: _P) -> _P:
    """`top`'s set fields replace `base`'s (whole fields, never a deep merge); sources are concatenated."""
    changes: dict[str, Any] = {
        f.name: getattr(top, f.name) for f in fields(top) if f.name != "sources" and getattr(top, f.name) is not None
    }
    changes["sources"] = tuple(dict.fromkeys((*top.sources, *base.sources)))
    return replace(base, **changes)


def set_fields(policy: RoutePolicyIR | BackendPolicyIR) -> list[str]:
    """Names of the policy fields this (partial) policy sets."""
    return [f.name for f in fields(policy) if f.name != "sources" and getattr(policy, f.name) is not None]


def manifest_name(policy: RoutePolicyIR | BackendPolicyIR, name: str) -> str:
    """The manifest name of a policy field (`api_key` -> `apiKeyAuthentication`)."""
    for f in fields(policy):
        if f.name == name:
            return str(f.metadata.get("manifest", name))
    return name
