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

from controlplane.gatewayapi import ai_transforms
from controlplane.gatewayapi.attach import attach_route
from controlplane.gatewayapi.backends import is_ai_backend, translate_backend
from controlplane.gatewayapi.direct import mark_direct_routes
from controlplane.gatewayapi.grants import ReferenceGrants, read_grants
from controlplane.gatewayapi.hostnames import Attached, build_listener
from controlplane.gatewayapi.listener_tls import resolve_certificates
from controlplane.gatewayapi.listeners import GATEWAY_API, GatewayListener, gateway_listeners
from controlplane.gatewayapi.plain_backends import ServiceBackends, is_static_backend, translate_static
from controlplane.gatewayapi.policies import is_policy, parse_policy
from controlplane.gatewayapi.policy_attach import Attachments, authn_id, resolve, rule_name
from controlplane.gatewayapi.pools import attach_objectives, is_objective, is_pool, translate_pool
from controlplane.gatewayapi.routes import RouteTranslator
from controlplane.ir import (
    DEFAULT_MAX_BODY_BYTES,
    IR,
    BackendIR,
    BackendPolicyIR,
    ListenerIR,
    PlainBackendIR,
    PoolIR,
    RetryIR,
    RouteIR,
    TlsCertificateIR,
    TlsChainIR,
)
from controlplane.resources import Problem, Resource, secret_data
from extproc import wire

MODEL_HEADER = wire.MODEL_HEADER
_GATEWAY_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"}
# Pods: an InferencePool's model servers; Services: backendRefs and an InferencePool's endpoint picker.
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
    services_known: bool = False,
) -> Translation:
    """`services_known`: the resources hold every Service that exists (the controller's view),
    so a Service backendRef to another is not found (plain_backends.ServiceBackends)."""
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
    plain: dict[str, PlainBackendIR] = {}  # by cluster
    plain_clusters: dict[str, str] = {}  # "<ns>/<name>" of static AgentgatewayBackends -> cluster
    for res in by_kind.get("AIBackend", []) + by_kind.get("AgentgatewayBackend", []):
        if is_static_backend(res):
            static, static_problems = translate_static(res, secrets=secrets, configmaps=configmaps)
            problems.extend(static_problems)
            if static is not None:
                plain[static.cluster] = static
                plain_clusters[res.key] = static.cluster
            continue
        backend, backend_problems = translate_backend(res, secrets=secrets, configmaps=configmaps)
        problems.extend(backend_problems)
        if backend is not None:
            backends.append(backend)
            clusters[res.key] = backend.cluster

    pools: dict[str, PoolIR] = {}
    pool_services = {s.key: s for s in by_kind.get("Service", [])}  # endpoint pickers
    for res in by_kind.get("InferencePool", []):
        pool, pool_problems, pool_notes = translate_pool(res, pods=by_kind.get("Pod", []), services=pool_services)
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
    listeners, certificates = _with_certificates(listeners, secrets, grants, problems)

    attachments = _attachments(by_kind, listeners, secrets, configmaps, clusters, problems)
    backends = [_with_backend_policy(b, attachments.backend.get(b.key)) for b in backends]

    ports: dict[tuple[str, int], list[GatewayListener]] = {}
    for lst in listeners:
        ports.setdefault((lst.gateway.key, lst.port), []).append(lst)
    attached: dict[tuple[str, int], list[Attached]] = {key: [] for key in ports}
    route_models: dict[str, set[str]] = {}
    route_aliases: dict[str, list[tuple[tuple[str, str], ...]]] = {}  # gateway -> modelAliases tables
    services = ServiceBackends(by_kind.get("Service", []), complete=services_known)
    for route_res in by_kind.get("HTTPRoute", []):
        parents, attach_problems = attach_route(route_res, listeners=listeners, namespaces=namespaces)
        rt = RouteTranslator(
            route_res,
            clusters,
            grants,
            pool_clusters={k: p.cluster for k, p in pools.items()},
            plain_clusters=plain_clusters,
            services=services.resolver(route_res),
        )
        rules = [_backend_request_timeout(route_res, rule, backends, problems) for rule in rt.rules()]
        rules = [_plain_request_timeout(rule, plain) for rule in rules]
        _routes_agree(route_res, rules, backends, problems)
        problems.extend(attach_problems)
        problems.extend(rt.problems)
        for lst, hosts in parents:
            attached[(lst.gateway.key, lst.port)].extend(
                Attached(lst.hostname, _with_policy(rule, route_res, lst, attachments), hosts) for rule in rules
            )
            models = route_models.setdefault(lst.gateway.key, set())
            for rule in rules:
                models.update(
                    h.value for h in rule.match.headers if h.name.lower() == MODEL_HEADER and h.kind == "Exact"
                )
                for wb in rule.backends:
                    models.update(_backend_models(backends, wb.cluster))
                    route_aliases.setdefault(lst.gateway.key, []).extend(_backend_aliases(backends, wb.cluster))

    built: list[ListenerIR] = [
        build_listener(
            gateway=gw,
            port=port,
            listener_hosts=[lst.hostname for lst in ports[(gw, port)]],
            attached=routes,
            address=listen_address,
            max_body_bytes=max_body_bytes,
            tls=_tls_chains(ports[(gw, port)], certificates),
        )
        for (gw, port), routes in sorted(attached.items())
    ]
    sorted_backends = tuple(sorted(backends, key=lambda b: b.key))
    routed = {wb.cluster for lst in built for vh in lst.virtual_hosts for r in vh.routes for wb in r.backends}
    aliases = {gw: ai_transforms.gateway_aliases(tables) for gw, tables in route_aliases.items()}
    for gw, table in aliases.items():  # an exact alias is a model the gateway serves: listed on /models
        route_models.setdefault(gw, set()).update(alias for alias, _ in table if "*" not in alias)
    notes.extend(services.notes)
    plain.update(services.backends)
    ir = IR(
        listeners=mark_direct_routes(tuple(built), sorted_backends),
        backends=sorted_backends,
        models=tuple(sorted((gw, tuple(sorted(m))) for gw, m in route_models.items())),
        pools=tuple(p for _, p in sorted(pools.items()) if p.cluster in routed),
        aliases=tuple(sorted((gw, table) for gw, table in aliases.items() if table)),
        plain_backends=tuple(plain[c] for c in sorted(plain)),
    )
    for err in ir.validate():
        problems.append(Problem("", "configuration", "", f"internal: {err}"))
    return Translation(ir=ir, problems=problems, notes=notes)


def _with_certificates(
    listeners: list[GatewayListener],
    secrets: Mapping[str, Mapping[str, str]],
    grants: ReferenceGrants,
    problems: list[Problem],
) -> tuple[list[GatewayListener], dict[int, tuple[TlsCertificateIR, ...]]]:
    """HTTPS listeners whose certificates resolve (the others are dropped with their problem),
    and those certificates by listener (`id`)."""
    kept: list[GatewayListener] = []
    certificates: dict[int, tuple[TlsCertificateIR, ...]] = {}
    for lst in listeners:
        if lst.protocol == "HTTPS":
            certs, problem = resolve_certificates(
                gateway=lst.gateway, refs=lst.certificates, secrets=secrets, grants=grants
            )
            if problem is not None:
                problems.append(problem)
                continue
            certificates[id(lst)] = certs
        kept.append(lst)
    return kept, certificates


def _tls_chains(
    listeners: list[GatewayListener], certificates: Mapping[int, tuple[TlsCertificateIR, ...]]
) -> tuple[TlsChainIR, ...]:
    """One SNI filter chain per HTTPS listener on a port (its hostname; none = any name)."""
    chains = [
        TlsChainIR(server_names=(lst.hostname,) if lst.hostname else (), certificates=certificates[id(lst)])
        for lst in listeners
        if lst.protocol == "HTTPS"
    ]
    return tuple(sorted(chains, key=lambda c: c.server_names))


def _attachments(
    by_kind: Mapping[str, list[Resource]],
    listeners: list[GatewayListener],
    secrets: Mapping[str, Mapping[str, str]],
    configmaps: Mapping[str, Mapping[str, str]],
    clusters: Mapping[str, str],
    problems: list[Problem],
) -> Attachments:
    """AIPolicy / AgentgatewayPolicy objects parsed and their targets resolved (policy_attach.py)."""
    ai_backends = by_kind.get("AIBackend", []) + by_kind.get("AgentgatewayBackend", [])
    labelled = {
        "Gateway": by_kind.get("Gateway", []),
        "HTTPRoute": by_kind.get("HTTPRoute", []),
        "Backend": ai_backends,
    }
    parsed = [
        parse_policy(
            res,
            secrets=secrets,
            secret_resources=by_kind.get("Secret", []),
            configmaps=configmaps,
            configmap_resources=by_kind.get("ConfigMap", []),
            labelled=labelled,
        )
        for res in by_kind.get("AIPolicy", []) + by_kind.get("AgentgatewayPolicy", [])
    ]
    for p in parsed:
        problems.extend(p.problems)
    attachments = resolve(
        parsed,
        listeners=listeners,
        gateways=by_kind.get("Gateway", []),
        routes=by_kind.get("HTTPRoute", []),
        backends=clusters,
    )
    problems.extend(attachments.problems)
    return attachments


def _with_policy(rule: RouteIR, route_res: Resource, lst: GatewayListener, attachments: Attachments) -> RouteIR:
    """The rule with its effective traffic policy on this listener."""
    index = wire.rule_of_route_name(rule.name)
    policy = attachments.route_policy(
        gateway=lst.gateway.key,
        listener=lst.name,
        route=route_res.key,
        rule=rule_name(route_res, index) if index is not None else None,
    )
    if policy is None:
        return rule
    aid = authn_id(policy)
    if aid is not None:
        # The route name carries its authentication: the router stage finds it from the name (and
        # routes on several listeners with different policies stay distinct).
        return replace(rule, policy=policy, name=wire.authn_route_name(rule.name, aid))
    return replace(rule, policy=policy)


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


def _routes_agree(
    route_res: Resource, rules: list[RouteIR], backends: list[BackendIR], problems: list[Problem]
) -> None:
    """The router stage reads one `policies.ai.routes` map per route: a rule's backends must agree."""
    by_cluster = {b.cluster: b.routes for b in backends}
    for rule in rules:
        maps = {by_cluster[wb.cluster] for wb in rule.backends if wb.cluster in by_cluster}
        if len(maps) > 1:
            problems.append(
                Problem(
                    route_res.file,
                    route_res.ref,
                    "spec.rules",
                    f"route {rule.name} sends to backends with different policies.ai.routes; "
                    "llmgw resolves a path's operation once per route (give them the same map, or split the rule)",
                    "Unsupported",
                )
            )
            return


def _plain_request_timeout(rule: RouteIR, plain: Mapping[str, PlainBackendIR]) -> RouteIR:
    """A static backend's `policies.http.requestTimeout` bounds the routes to it (the shortest wins)."""
    seconds = [plain[wb.cluster].request_timeout_s for wb in rule.backends if wb.cluster in plain]
    bounded = [s for s in seconds if s]
    return replace(rule, timeout_s=min(rule.timeout_s, *bounded)) if bounded else rule


def _backend_models(backends: list[BackendIR], cluster: str) -> set[str]:
    return {p.model for b in backends if b.cluster == cluster for p in b.providers if p.model}


def _backend_aliases(backends: list[BackendIR], cluster: str) -> list[tuple[tuple[str, str], ...]]:
    """The modelAliases of each provider of the backend behind `cluster` (backend-level merged under its own)."""
    tables = []
    for b in backends:
        if b.cluster != cluster:
            continue
        for p in b.providers:
            t = b.transforms.merged(p.transforms) if b.transforms else p.transforms
            tables.append(t.aliases if t else ())
    return tables


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
            or is_policy(res)
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


def _with_backend_policy(backend: BackendIR, policy: BackendPolicyIR | None) -> BackendIR:
    """A backend with its attached `backend` policy; its own `policies.ai` wins field by field."""
    if policy is None:
        return backend
    transforms = backend.transforms
    if policy.transforms is not None:
        transforms = policy.transforms.merged(backend.transforms)
    return replace(
        backend,
        policy=policy,
        transforms=transforms,
        prompt_guard=backend.prompt_guard if backend.prompt_guard is not None else policy.prompt_guard,
    )
