"""IR -> the extproc config contract (the only place resolved credentials leave the IR)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from controlplane.gatewayapi.policy_apikey import policy_id as api_key_policy_id
from controlplane.gatewayapi.policy_attach import authn_id
from controlplane.gatewayapi.policy_jwt import provider_names
from controlplane.ir import IR, ApiKeyAuthIR, AuthIR, GuardIR, JwtAuthIR, TransformsIR
from extproc.contract import (
    ApiKeyEntry,
    ApiKeyPolicyConfig,
    AuthConfig,
    AuthnConfig,
    ExtprocConfig,
    JwtPolicyConfig,
    LimitRuleConfig,
    PriceConfig,
    PromptCachingConfig,
    ProviderConfig,
    TransformsConfig,
)
from extproc.policies.guards.config import GuardConfig, HeaderMatchConfig, PromptGuardConfig


def _auth(auth: AuthIR | None) -> AuthConfig | None:
    if auth is None:
        return None
    return AuthConfig(
        header=auth.header,
        prefix=auth.prefix,
        value=auth.value,
        source=auth.source,
        kind=auth.kind,
        params=dict(auth.params),
    )


def _guard(g: GuardIR) -> GuardConfig:
    return GuardConfig(
        kind=g.kind,
        message=g.message,
        status=g.status,
        scope=g.scope,
        action=g.action,
        builtins=g.builtins,
        patterns=g.patterns,
        url=g.url,
        verify_tls=g.verify_tls,
        sni=g.sni,
        timeout_s=g.timeout_s,
        connect_timeout_s=g.connect_timeout_s,
        failure_mode=g.failure_mode,
        forward_headers=tuple(HeaderMatchConfig(kind=m.kind, name=m.name, value=m.value) for m in g.forward_headers),
        settings=dict(g.settings),
        auth=_auth(g.auth),
    )


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
                pricing=tuple(
                    PriceConfig(
                        input=x.input,
                        output=x.output,
                        cache_read=x.cache_read,
                        cache_write=x.cache_write,
                        model=x.model,
                    )
                    for x in p.pricing
                ),
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
    guards = {
        b.key: PromptGuardConfig(
            request=tuple(_guard(g) for g in b.prompt_guard.request),
            response=tuple(_guard(g) for g in b.prompt_guard.response),
            streaming=b.prompt_guard.streaming,
        )
        for b in ir.backends
        if b.prompt_guard is not None
    }
    authn: dict[str, AuthnConfig] = {}
    gateway_authn: dict[str, list[str]] = {}
    for lst in ir.listeners:
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                aid = authn_id(r.policy)
                if aid is None or r.policy is None:
                    continue
                if aid not in authn:
                    export = r.policy.caller_export
                    authn[aid] = AuthnConfig(
                        id=aid,
                        api_key=_api_key(r.policy.api_key) if r.policy.api_key else None,
                        jwt=_jwt(r.policy.jwt) if r.policy.jwt else None,
                        upstream_headers=dict(export.upstream_headers) if export else {},
                        metric_labels=list(export.metric_labels) if export else [],
                    )
                ids = gateway_authn.setdefault(lst.gateway, [])
                if aid not in ids:
                    ids.append(aid)
    config = ExtprocConfig(
        version="",
        providers=providers,
        models={gw: list(m) for gw, m in ir.models},
        direct_routes=direct,
        limits=_limits(ir),
        authn=authn,
        gateway_authn=gateway_authn,
        aliases={gw: dict(table) for gw, table in ir.aliases},
        route_types=route_types,
        guards=guards,
    )
    digest = hashlib.sha256(config.to_json()).hexdigest()[:12]
    return replace(config, version=digest)


def _limits(ir: IR) -> dict[str, tuple[LimitRuleConfig, ...]]:
    """Envoy route name -> the limits and budgets of its effective policy (extproc/policies/limits.py)."""
    out: dict[str, tuple[LimitRuleConfig, ...]] = {}
    for lst in ir.listeners:
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                rate = r.policy.rate_limit if r.policy is not None else None
                if rate is None or not rate.local or not r.ai:
                    continue
                out[r.name] = tuple(
                    LimitRuleConfig(id=x.id, kind=x.kind, amount=x.amount, unit=x.unit, burst=x.burst, keys=x.keys)
                    for x in rate.local
                )
    return out


def _api_key(auth: ApiKeyAuthIR) -> ApiKeyPolicyConfig:
    return ApiKeyPolicyConfig(
        id=api_key_policy_id(auth),
        mode=auth.mode,
        keys=[
            ApiKeyEntry(
                key_id=k.key_id,
                sha256=k.sha256,
                user=k.user,
                team=k.team,
                tenant=k.tenant,
                labels=[list(kv) for kv in k.labels],
            )
            for k in auth.keys
        ],
        header=auth.header,
        prefix=auth.prefix,
        source=auth.source,
    )


def _jwt(auth: JwtAuthIR) -> JwtPolicyConfig:
    return JwtPolicyConfig(
        mode=auth.mode, providers=provider_names(auth), header=auth.header, prefix=auth.prefix, source=auth.source
    )


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
