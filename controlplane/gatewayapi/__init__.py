"""Gateway API + AIBackend resources -> IR, as one pure function.

`translate` is what both the file provider and (later) the Kubernetes
provider feed. Invalid objects are dropped with a Problem each; the rest of
the configuration still translates, so one bad route does not take down the
gateway (the supervisor decides whether to apply a config with problems).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.gatewayapi.backends import is_ai_backend, translate_backend
from controlplane.gatewayapi.routes import (
    GATEWAY_API,
    RouteTranslator,
    build_listener,
    gateway_listeners,
    intersect_hostnames,
)
from controlplane.ir import DEFAULT_MAX_BODY_BYTES, IR, BackendIR, ListenerIR, RouteIR
from controlplane.resources import Problem, Resource, secret_data

MODEL_HEADER = "x-gateway-model-name"
_IGNORED_KINDS = {"Namespace", "ReferenceGrant"}


@dataclass(frozen=True)
class Translation:
    ir: IR
    problems: list[Problem] = field(default_factory=list)


def translate(
    resources: Iterable[Resource],
    *,
    environ: Mapping[str, str] | None = None,
    listen_address: str = "0.0.0.0",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Translation:
    problems: list[Problem] = []
    by_kind: dict[str, list[Resource]] = {}
    for res in resources:
        group = res.api_version.split("/")[0] if "/" in res.api_version else ""
        if group == GATEWAY_API or res.kind in ("Secret", "ConfigMap") or is_ai_backend(res):
            by_kind.setdefault(res.kind, []).append(res)
        elif res.kind not in _IGNORED_KINDS:
            problems.append(
                Problem(
                    res.file,
                    res.ref,
                    "kind",
                    f"{res.api_version} {res.kind} is not a kind llmgw reads",
                    "InvalidKind",
                )
            )
    problems.extend(_duplicates(by_kind))

    secrets: dict[str, dict[str, str]] = {}
    for s in by_kind.get("Secret", []):
        data, secret_problems = secret_data(s, environ=environ)
        problems.extend(secret_problems)
        secrets[s.key] = data
    configmaps = {
        c.key: {str(k): str(v) for k, v in (c.body.get("data") or {}).items()} for c in by_kind.get("ConfigMap", [])
    }

    backends: list[BackendIR] = []
    for res in by_kind.get("AIBackend", []) + by_kind.get("AgentgatewayBackend", []):
        backend, backend_problems = translate_backend(res, secrets=secrets, configmaps=configmaps)
        problems.extend(backend_problems)
        if backend is not None:
            backends.append(backend)
    clusters = {b.key: b.cluster for b in backends}

    classes = {c.name: c for c in by_kind.get("GatewayClass", [])}
    listeners, listener_problems = gateway_listeners(by_kind.get("Gateway", []), classes)
    problems.extend(listener_problems)

    attached: dict[tuple[str, int], list[tuple[RouteIR, list[str]]]] = {}
    for lst in listeners:
        attached.setdefault((lst.gateway.key, lst.port), [])
    route_models: dict[str, set[str]] = {}
    for route_res in by_kind.get("HTTPRoute", []):
        rt = RouteTranslator(route_res, clusters)
        parents = rt.parents(listeners)
        rules = rt.rules()
        problems.extend(rt.problems)
        route_hosts = [str(h) for h in route_res.spec.get("hostnames") or []]
        for lst in parents:
            hosts = intersect_hostnames(lst.hostname, route_hosts)
            if hosts is None:
                problems.append(
                    Problem(
                        route_res.file,
                        route_res.ref,
                        "spec.hostnames",
                        f"no hostname overlaps listener {lst.name}",
                        "NoMatchingListenerHostname",
                    )
                )
                continue
            bucket = attached[(lst.gateway.key, lst.port)]
            bucket.extend((rule, hosts) for rule in rules)
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
            attached=routes,
            address=listen_address,
            max_body_bytes=max_body_bytes,
        )
        for (gw, port), routes in sorted(attached.items())
    ]
    ir = IR(
        listeners=tuple(built),
        backends=tuple(sorted(backends, key=lambda b: b.key)),
        models=tuple(sorted((gw, tuple(sorted(m))) for gw, m in route_models.items())),
    )
    for err in ir.validate():
        problems.append(Problem("", "configuration", "", err))
    return Translation(ir=ir, problems=problems)


def _backend_models(backends: list[BackendIR], cluster: str) -> set[str]:
    return {p.model for b in backends if b.cluster == cluster for p in b.providers if p.model}


def _duplicates(by_kind: Mapping[str, list[Resource]]) -> list[Problem]:
    problems = []
    for items in by_kind.values():
        seen: dict[str, Resource] = {}
        for res in items:
            if res.key in seen:
                problems.append(
                    Problem(
                        res.file,
                        res.ref,
                        "metadata.name",
                        f"duplicate of the one in {seen[res.key].file}",
                    )
                )
            seen[res.key] = res
    return problems
