"""Routes whose provider is known before the body is read: one ext_proc stream instead of two.

The attempt stage exists because the provider is only known after Envoy
picked the endpoint (model routing, weights, failover groups). Every ext_proc
stream costs more than the work done in it (DESIGN, performance notes), so a
route whose outcome cannot change gets its provider work (path, credential,
model override) done by the router stage, and points at a twin cluster
without the upstream ext_proc filter.

A route is direct when, in its virtual host:
- it has one backend (no weights) whose cluster has exactly one provider of an
  OpenAI-compatible kind with a key, Entra ID or no credential;
- it has no URLRewrite path filter (the router stage sets the provider path
  itself, and Envoy would rewrite that again);
- neither it nor any route before it matches on `x-gateway-model-name`: then
  setting that header from the body cannot change which route matches, so the
  router stage does not clear the route cache either.
"""

from __future__ import annotations

from dataclasses import replace

from controlplane.gatewayapi.provider_kinds import KINDS
from controlplane.ir import BackendIR, ListenerIR, RouteIR, VirtualHostIR
from extproc import wire

DIRECT_AUTH = {"header", "azure"}
DIRECT_SUFFIX = "/direct"


def mark_direct_routes(listeners: tuple[ListenerIR, ...], backends: tuple[BackendIR, ...]) -> tuple[ListenerIR, ...]:
    by_cluster = {b.cluster: b for b in backends}
    return tuple(
        replace(lst, virtual_hosts=tuple(_mark_vhost(vh, by_cluster) for vh in lst.virtual_hosts)) for lst in listeners
    )


def _mark_vhost(vh: VirtualHostIR, by_cluster: dict[str, BackendIR]) -> VirtualHostIR:
    routes: list[RouteIR] = []
    model_routing_seen = False
    for route in vh.routes:
        matches_model = any(h.name.lower() == wire.MODEL_HEADER for h in route.match.headers)
        model_routing_seen = model_routing_seen or matches_model
        provider = None if model_routing_seen else _single_provider(route, by_cluster)
        if provider is not None:
            route = replace(route, name=route.name + DIRECT_SUFFIX, direct_provider=provider)
        routes.append(route)
    return replace(vh, routes=tuple(routes))


def _single_provider(route: RouteIR, by_cluster: dict[str, BackendIR]) -> str | None:
    if not route.ai or len(route.backends) != 1 or route.backends[0].invalid:
        return None
    if route.rewrite is not None and (route.rewrite.prefix is not None or route.rewrite.full_path is not None):
        return None
    backend = by_cluster.get(route.backends[0].cluster)
    if backend is None or len(backend.providers) != 1:
        return None
    provider = backend.providers[0]
    kind = KINDS.get(provider.kind)
    if kind is None or not kind.direct:
        return None
    if provider.auth is not None and provider.auth.kind not in DIRECT_AUTH:
        return None
    return provider.id
