"""Gateway API + AIBackend resources -> IR, as one pure function.

`translate` is what both the file provider and (later) the Kubernetes
provider feed. Invalid objects are dropped with a Problem each; the rest of
the configuration still translates, so one bad route does not take down the
gateway (the supervisor decides whether to apply a config with problems).
Of two objects with one identity only the first is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from controlplane.gatewayapi.attach import attach_route
from controlplane.gatewayapi.backends import is_ai_backend, translate_backend
from controlplane.gatewayapi.direct import mark_direct_routes
from controlplane.gatewayapi.grants import read_grants
from controlplane.gatewayapi.hostnames import Attached, build_listener
from controlplane.gatewayapi.listeners import GATEWAY_API, GatewayListener, gateway_listeners
from controlplane.gatewayapi.pools import attach_objectives, is_objective, is_pool, translate_pool
from controlplane.gatewayapi.routes import RouteTranslator
from controlplane.ir import DEFAULT_MAX_BODY_BYTES, IR, BackendIR, ListenerIR, PoolIR, RetryIR, RouteIR
from controlplane.resources import Problem, Resource, secret_data
from extproc import wire

MODEL_HEADER = wire.MODEL_HEADER
_GATEWAY_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"}
# Pods and Services: an InferencePool's model servers and endpoint picker (gatewayapi/pools.py).
_CORE_KINDS = {"Secret", "ConfigMap", "Namespace", "Pod", "Service"}
# Data-plane provisioning, read by the Kubernetes controller only: standalone has no pod to shape.
_OTHER_MODES = {
    ("llmgw.dev/v1alpha1", "GatewayParameters"),
    ("agentgateway.dev/v1alpha1", "AgentgatewayParameters"),
}
_CLUSTER_SCOPED = {"GatewayClass", "Namespace"}
# Kinds sharing one identity space: both AI backend kinds become cluster aibackend/<ns>/<name>.
_IDENTITY = {"AgentgatewayBackend": "AIBackend"}
# Label every Namespace carries in Kubernetes (1.22+), usable in allowedRoutes selectors.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Translation:
    ir: IR
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # read and deliberately not acted upon here


def translate(
    resources: Iterable[Resource],
    *,
    environ: Mapping[str, str] | None = None,
    listen_address: str = "0.0.0.0",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Translation:
    problems: list[Problem] = []
    notes: list[Problem] = []
    by_kind = _select(resources, problems, notes)

    namespaces = {ns.name: {**ns.labels, NAMESPACE_NAME_LABEL: ns.name} for ns in by_kind.get("Namespace", [])}
    secrets: dict[str, dict[str, str]] = {}
    for s in by_kind.get("Secret", []):
        data, secret_problems = secret_data(s, environ=environ)
        problems.extend(secret_problems)
        secrets[s.key] = data
    configmaps: dict[str, dict[str, str]] = {}
    for c in by_kind.get("ConfigMap", []):
        data = c.body.get("data") or {}
        if not isinstance(data, Mapping):
            problems.append(Problem(c.file, c.ref, "data", "must be a mapping"))
            continue
        configmaps[c.key] = {str(k): str(v) for k, v in data.items()}

    backends: list[BackendIR] = []
    clusters: dict[str, str] = {}
    for res in by_kind.get("AIBackend", []) + by_kind.get("AgentgatewayBackend", []):
        backend, backend_problems = translate_backend(res, secrets=secrets, configmaps=configmaps)
        problems.extend(backend_problems)
        if backend is not None:
            backends.append(backend)
            clusters[res.key] = backend.cluster

    pools: dict[str, PoolIR] = {}
    services = {s.key: s for s in by_kind.get("Service", [])}
    for res in by_kind.get("InferencePool", []):
        pool, pool_problems, pool_notes = translate_pool(res, pods=by_kind.get("Pod", []), services=services)
        problems.extend(pool_problems)
        notes.extend(pool_notes)
        if pool is not None:
            pools[res.key] = pool
    pools, objective_problems, objective_notes = attach_objectives(pools, by_kind.get("InferenceObjective", []))
    problems.extend(objective_problems)
    notes.extend(objective_notes)

    grants, grant_problems = read_grants(by_kind.get("ReferenceGrant", []))
    problems.extend(grant_problems)
    classes = {c.name: c for c in by_kind.get("GatewayClass", [])}
    listeners, listener_problems = gateway_listeners(by_kind.get("Gateway", []), classes)
    problems.extend(listener_problems)

    ports: dict[tuple[str, int], list[GatewayListener]] = {}
    for lst in listeners:
        ports.setdefault((lst.gateway.key, lst.port), []).append(lst)
    attached: dict[tuple[str, int], list[Attached]] = {key: [] for key in ports}
    route_models: dict[str, set[str]] = {}
    for route_res in by_kind.get("HTTPRoute", []):
        parents, attach_problems = attach_route(route_res, listeners=listeners, namespaces=namespaces)
        rt = RouteTranslator(route_res, clusters, grants, pool_clusters={k: p.cluster for k, p in pools.items()})
        rules = [_backend_request_timeout(route_res, rule, backends, problems) for rule in rt.rules()]
        problems.extend(attach_problems)
        problems.extend(rt.problems)
        for lst, hosts in parents:
            attached[(lst.gateway.key, lst.port)].extend(Attached(lst.hostname, rule, hosts) for rule in rules)
            models = route_models.setdefault(lst.gateway.key, set())
            for rule in rules:
                models.update(
                    h.value for h in rule.match.headers if h.name.lower() == MODEL_HEADER and h.kind == "Exact"
                )
                for wb in rule.backends:
                    models.update(_backend_models(backends, wb.cluster))

    built: list[ListenerIR] = [
        build_listener(
            gateway=gw,
            port=port,
            listener_hosts=[lst.hostname for lst in ports[(gw, port)]],
            attached=routes,
            address=listen_address,
            max_body_bytes=max_body_bytes,
        )
        for (gw, port), routes in sorted(attached.items())
    ]
    sorted_backends = tuple(sorted(backends, key=lambda b: b.key))
    routed = {wb.cluster for lst in built for vh in lst.virtual_hosts for r in vh.routes for wb in r.backends}
    ir = IR(
        listeners=mark_direct_routes(tuple(built), sorted_backends),
        backends=sorted_backends,
        models=tuple(sorted((gw, tuple(sorted(m))) for gw, m in route_models.items())),
        pools=tuple(p for _, p in sorted(pools.items()) if p.cluster in routed),
    )
    for err in ir.validate():
        problems.append(Problem("", "configuration", "", f"internal: {err}"))
    return Translation(ir=ir, problems=problems, notes=notes)


def _backend_request_timeout(
    route_res: Resource, rule: RouteIR, backends: list[BackendIR], problems: list[Problem]
) -> RouteIR:
    """An AIBackend's `policies.http.requestTimeout` as the per-attempt timeout of the routes to it."""
    by_cluster = {b.cluster: b for b in backends}
    targets = [by_cluster.get(wb.cluster) for wb in rule.backends]
    timeouts = {b.request_timeout_s if b else None for b in targets}
    if timeouts <= {None}:
        return rule
    if len(timeouts) > 1:
        problems.append(
            Problem(
                route_res.file,
                route_res.ref,
                "spec.rules",
                f"route {rule.name} sends to backends with different policies.http.requestTimeout; "
                "llmgw cannot honour them exactly on one route (split the rule, or give them the same value)",
                "Unsupported",
            )
        )
        return rule
    (seconds,) = timeouts
    assert seconds is not None
    retry = rule.retry or RetryIR()
    providers = max(len(b.providers) for b in targets if b)
    if providers < 2 and retry.attempts is None:
        # No retry policy on this route: its one attempt is bounded by the route timeout.
        return replace(rule, timeout_s=min(rule.timeout_s, seconds))
    per_try = min(retry.per_try_timeout_s or seconds, seconds)
    return replace(rule, retry=replace(retry, per_try_timeout_s=per_try))


def _backend_models(backends: list[BackendIR], cluster: str) -> set[str]:
    return {p.model for b in backends if b.cluster == cluster for p in b.providers if p.model}


def _select(resources: Iterable[Resource], problems: list[Problem], notes: list[Problem]) -> dict[str, list[Resource]]:
    """Resources of the kinds llmgw reads, by kind; the first of two with one identity wins."""
    by_kind: dict[str, list[Resource]] = {}
    seen: dict[tuple[str, str], Resource] = {}
    for res in resources:
        group = res.api_version.split("/")[0] if "/" in res.api_version else ""
        known = (
            (group == GATEWAY_API and res.kind in _GATEWAY_KINDS)
            or (res.api_version == "v1" and res.kind in _CORE_KINDS)
            or is_ai_backend(res)
            or is_pool(res)
            or is_objective(res)
        )
        if not known and (res.api_version, res.kind) in _OTHER_MODES:
            notes.append(
                Problem(
                    res.file,
                    res.ref,
                    "",
                    "shapes the data-plane pod in Kubernetes; ignored when llmgw runs standalone (no pod)",
                    "Ignored",
                )
            )
            continue
        if not known:
            problems.append(
                Problem(
                    res.file, res.ref, "kind", f"{res.api_version} {res.kind} is not a kind llmgw reads", "InvalidKind"
                )
            )
            continue
        identity = (_IDENTITY.get(res.kind, res.kind), res.name if res.kind in _CLUSTER_SCOPED else res.key)
        first = seen.get(identity)
        if first is not None:
            problems.append(
                Problem(
                    res.file,
                    res.ref,
                    "metadata.name",
                    f"duplicate of {first.ref} in {first.where}; only that one is used",
                )
            )
            continue
        seen[identity] = res
        by_kind.setdefault(res.kind, []).append(res)
    return by_kind
