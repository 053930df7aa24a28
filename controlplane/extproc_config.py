"""IR -> the extproc config contract (the only place resolved credentials leave the IR)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from controlplane.ir import IR, TransformsIR
from extproc.contract import AuthConfig, ExtprocConfig, PromptCachingConfig, ProviderConfig, TransformsConfig


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
                transforms=_transforms(backend.transforms.merged(p.transforms) if backend.transforms else p.transforms),
                routes=backend.routes,
            )
    direct = {
        r.name: r.direct_provider
        for lst in ir.listeners
        for vh in lst.virtual_hosts
        for r in vh.routes
        if r.direct_provider
    }
    # A route's backends share one routes map (gatewayapi refuses a rule whose backends disagree).
    routes_of = {b.cluster: b.routes for b in ir.backends if b.routes}
    route_types = {
        r.name: routes_of[r.backends[0].cluster]
        for lst in ir.listeners
        for vh in lst.virtual_hosts
        for r in vh.routes
        if r.ai and r.backends and r.backends[0].cluster in routes_of
    }
    config = ExtprocConfig(
        version="",
        providers=providers,
        models={gw: list(m) for gw, m in ir.models},
        direct_routes=direct,
        aliases={gw: dict(table) for gw, table in ir.aliases},
        route_types=route_types,
    )
    digest = hashlib.sha256(config.to_json()).hexdigest()[:12]
    return replace(config, version=digest)


def _transforms(t: TransformsIR | None) -> TransformsConfig | None:
    if t is None:
        return None
    caching = t.prompt_caching
    return TransformsConfig(
        aliases=dict(t.aliases),
        defaults=dict(t.defaults),
        overrides=dict(t.overrides),
        transformations=dict(t.transformations),
        final_transformations=dict(t.final_transformations),
        prepend=[{"role": r, "content": c} for r, c in t.prepend],
        append=[{"role": r, "content": c} for r, c in t.append],
        prompt_caching=PromptCachingConfig(
            cache_system=caching.cache_system,
            cache_messages=caching.cache_messages,
            cache_tools=caching.cache_tools,
            min_tokens=caching.min_tokens,
            cache_message_offset=caching.cache_message_offset,
        )
        if caching
        else None,
    )
