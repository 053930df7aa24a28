"""IR -> the extproc config contract (the only place resolved credentials leave the IR)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from controlplane.gatewayapi.policy_apikey import policy_id as api_key_policy_id
from controlplane.ir import IR
from extproc.contract import ApiKeyEntry, ApiKeyPolicyConfig, AuthConfig, ExtprocConfig, ProviderConfig


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
    api_keys: dict[str, ApiKeyPolicyConfig] = {}
    gateway_api_keys: dict[str, list[str]] = {}
    for lst in ir.listeners:
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                if r.policy is None or r.policy.api_key is None:
                    continue
                api_auth = r.policy.api_key
                pid = api_key_policy_id(api_auth)
                if pid not in api_keys:
                    api_keys[pid] = ApiKeyPolicyConfig(
                        id=pid,
                        mode=api_auth.mode,
                        keys=[
                            ApiKeyEntry(
                                key_id=k.key_id,
                                sha256=k.sha256,
                                user=k.user,
                                team=k.team,
                                tenant=k.tenant,
                                labels=[list(kv) for kv in k.labels],
                            )
                            for k in api_auth.keys
                        ],
                        header=api_auth.header,
                        prefix=api_auth.prefix,
                        source=api_auth.source,
                    )
                ids = gateway_api_keys.setdefault(lst.gateway, [])
                if pid not in ids:
                    ids.append(pid)
    config = ExtprocConfig(
        version="",
        providers=providers,
        models={gw: list(m) for gw, m in ir.models},
        direct_routes=direct,
        api_keys=api_keys,
        gateway_api_keys=gateway_api_keys,
    )
    digest = hashlib.sha256(config.to_json()).hexdigest()[:12]
    return replace(config, version=digest)
