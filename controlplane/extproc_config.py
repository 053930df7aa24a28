"""IR -> the extproc config contract (the only place resolved credentials leave the IR)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from controlplane.ir import IR
from extproc import wire
from extproc.contract import AuthConfig, ExtprocConfig, PoolPickConfig, ProviderConfig


def build(ir: IR) -> ExtprocConfig:
    providers: dict[str, ProviderConfig] = {}
    for backend in ir.backends:
        for p in backend.providers:
            auth = (
                AuthConfig(
                    header=p.auth.header,
                    prefix=p.auth.prefix,
                    value=p.auth.value,
                    source=p.auth.source,
                    kind=p.auth.kind,
                    params=dict(p.auth.params),
                )
                if p.auth
                else None
            )
            providers[p.id] = ProviderConfig(
                id=p.id,
                backend=backend.key,
                kind=p.kind,
                host=p.host,
                model=p.model,
                path=p.path,
                path_prefix=p.path_prefix,
                auth=auth,
                settings=dict(p.settings),
            )
    direct = {
        r.name: r.direct_provider
        for lst in ir.listeners
        for vh in lst.virtual_hosts
        for r in vh.routes
        if r.direct_provider
    }
    # InferencePools without an endpoint picker: llmgw picks in the router stage.
    pools = {
        p.key: PoolPickConfig(
            endpoints=[_endpoint(ip, port) for ip, port in p.endpoints],
            engine=p.engine,
            objectives=dict(p.objectives),
        )
        for p in ir.pools
        if p.picker is None
    }
    by_cluster = {wire.pool_cluster(k): k for k in pools}
    pool_routes: dict[str, str] = {}
    pool_models: dict[str, dict[str, str]] = {}
    for lst in ir.listeners:
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                targets = {by_cluster[b.cluster] for b in r.backends if b.cluster in by_cluster}
                if len(targets) != 1 or len(r.backends) != 1:
                    continue  # a split across pools: Envoy's pick decides, then its fallback balancer
                (pool,) = targets
                pool_routes[r.name] = pool
                for h in r.match.headers:
                    if h.name.lower() == wire.MODEL_HEADER and h.kind == "Exact":
                        pool_models.setdefault(lst.gateway, {}).setdefault(h.value, pool)
    config = ExtprocConfig(
        version="",
        providers=providers,
        models={gw: list(m) for gw, m in ir.models},
        direct_routes=direct,
        pools=pools,
        pool_routes=pool_routes,
        pool_models=pool_models,
    )
    digest = hashlib.sha256(config.to_json()).hexdigest()[:12]
    return replace(config, version=digest)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
