"""AIBackend (and agentgateway's AgentgatewayBackend) -> BackendIR.

Each provider block becomes a ProviderIR with its upstream address, TLS and
resolved credential. Problems name the file, object and field, and carry a
condition reason (ResolvedRefs-style `BackendNotFound`, `InvalidKind`, ...).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from controlplane.gatewayapi import ai_transforms
from controlplane.gatewayapi.ai_guards import prompt_guard
from controlplane.gatewayapi.cloud_auth import cloud_auth, region_params
from controlplane.gatewayapi.pricing import parse_pricing
from controlplane.gatewayapi.provider_kinds import KINDS, ProviderKind, settings_of
from controlplane.gatewayapi.routes import parse_duration
from controlplane.ir import TLSIR, AuthIR, BackendIR, ProviderIR, TransformsIR
from controlplane.resources import Problem, Resource, header_value_problem

AI_BACKEND_KINDS = {
    ("llmgw.dev/v1alpha1", "AIBackend"),
    ("agentgateway.dev/v1alpha1", "AgentgatewayBackend"),
}


PROVIDER_KIND_NAMES = tuple(KINDS)

# Every field llmgw reads in a backend is acted upon or reported; none is dropped silently.
_SPEC_FIELDS = {"ai", "policies"}
_AI_FIELDS = {"provider", "groups"}
_GROUP_FIELDS = {"providers"}
# `auth` on the provider itself (as some agentgateway tutorials write it) counts as policies.auth;
_PROVIDER_FIELDS = {"name", "policies", "host", "port", "path", "pathPrefix", "auth"}
# `hostOverride`/`pathOverride`: the older kgateway names of host/port and path, read in the
# agentgateway kind only (the AIBackend CRD has just host/port/path).
_OVERRIDE_FIELDS = {"hostOverride", "pathOverride"}
_POLICY_FIELDS = {"tls", "auth", "tcp", "http"}
# policy -> the one duration field llmgw reads in it
_TIMEOUTS = {"tcp": "connectTimeout", "http": "requestTimeout"}
_TLS_FIELDS = {"sni", "insecureSkipVerify", "caCertificateRefs"}
_AUTH_FIELDS = {"key", "secretRef", "apiKey", "location", "aws", "gcp", "azure"}
_SECRET_REF_FIELDS = {"name", "key"}
_API_KEY_FIELDS = {"secretRef", "key"}


def is_ai_backend(res: Resource) -> bool:
    return (res.api_version, res.kind) in AI_BACKEND_KINDS


class _Ctx:
    def __init__(
        self,
        res: Resource,
        secrets: Mapping[str, Mapping[str, str]],
        configmaps: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.res = res
        self.secrets = secrets
        self.configmaps = configmaps
        self.problems: list[Problem] = []
        self.timeouts: dict[str, list[tuple[float | None, str]]] = {"tcp": [], "http": []}
        self.transforms: dict[str, TransformsIR | None] = {}  # "<policies field>" -> its ai transforms

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.res.file, self.res.ref, fld, message, reason))

    def unknown(self, where: str, block: Any, known: Collection[str]) -> None:
        """A problem for each field of `block` llmgw does not act on."""
        if not isinstance(block, Mapping):
            return
        for key in block:
            if key not in known:
                self.fail(f"{where}.{key}", "is not supported by llmgw", "Unsupported")


def translate_backend(
    res: Resource,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    configmaps: Mapping[str, Mapping[str, str]],
) -> tuple[BackendIR | None, list[Problem]]:
    """One AIBackend; `secrets`/`configmaps` are keyed "<ns>/<name>" with decoded data."""
    ctx = _Ctx(res, secrets, configmaps)
    spec = res.spec
    ai = spec.get("ai")
    if not isinstance(ai, Mapping):
        ctx.fail("spec.ai", "is required (an AI backend needs `provider` or `groups`)")
        return None, ctx.problems
    ctx.unknown("spec", spec, _SPEC_FIELDS)
    ctx.unknown("spec.ai", ai, _AI_FIELDS)
    backend_policies = spec.get("policies") or {}
    if not isinstance(backend_policies, Mapping):
        ctx.fail("spec.policies", "must be a mapping")
        backend_policies = {}
    _check_policies(ctx, "spec.policies", backend_policies, backend_level=True)
    routes = _ai_routes(ctx, backend_policies.get("ai"))
    has_provider, has_groups = "provider" in ai, "groups" in ai
    if has_provider == has_groups:
        ctx.fail("spec.ai", "set exactly one of `provider` or `groups`")
        return None, ctx.problems
    blocks: list[tuple[str, Any, int]] = []  # (field, provider block, priority group)
    if has_provider:
        blocks.append(("spec.ai.provider", ai["provider"], 0))
    else:
        groups = ai["groups"]
        if not isinstance(groups, list) or not groups:
            ctx.fail("spec.ai.groups", "must be a non-empty list")
            return None, ctx.problems
        for gi, group in enumerate(groups):
            provs = group.get("providers") if isinstance(group, Mapping) else None
            ctx.unknown(f"spec.ai.groups[{gi}]", group, _GROUP_FIELDS)
            if not isinstance(provs, list) or not provs:
                ctx.fail(f"spec.ai.groups[{gi}].providers", "must be a non-empty list")
                continue
            blocks.extend((f"spec.ai.groups[{gi}].providers[{pi}]", p, gi) for pi, p in enumerate(provs))
    providers: list[ProviderIR] = []
    seen: set[str] = set()
    for where, block, priority in blocks:
        prov = _provider(ctx, where, block, backend_policies, in_group=has_groups)
        if prov is None:
            continue
        prov = replace(prov, priority=priority)
        if prov.name in seen:
            ctx.fail(f"{where}.name", f"duplicate provider name {prov.name!r}")
            continue
        seen.add(prov.name)
        providers.append(prov)
    connect_s = _one_timeout(ctx, "tcp")
    request_s = _one_timeout(ctx, "http")
    ai_policies = backend_policies.get("ai")
    guard_block = ai_policies.get("promptGuard") if isinstance(ai_policies, Mapping) else None
    guards = prompt_guard(ctx, "spec.policies.ai.promptGuard", guard_block) if guard_block is not None else None
    if ctx.problems:
        return None, ctx.problems
    return (
        BackendIR(
            key=res.key,
            providers=tuple(providers),
            connect_timeout_s=connect_s,
            request_timeout_s=request_s,
            transforms=ctx.transforms.get("spec.policies"),
            routes=routes,
            prompt_guard=guards,
        ),
        [],
    )


# agentgateway's RouteType -> the operation llmgw processes it as (extproc.operations), or passthrough.
ROUTE_TYPES = {
    "Completions": "chat_completions",
    "Messages": "messages",
    "Models": "models",
    "Responses": "responses",
    "AnthropicTokenCount": "count_tokens",
    "Embeddings": "embeddings",
    "Passthrough": "passthrough",
}
# RouteTypes llmgw has no processing for (reported, never treated as something else).
_UNSUPPORTED_ROUTE_TYPES = ("Detect", "Realtime", "Rerank", "GenerateContent", "GeminiCountTokens")


def _ai_routes(ctx: _Ctx, ai: Any) -> tuple[tuple[str, str], ...]:
    """`spec.policies.ai.routes`: path suffix (or `*`) -> RouteType, as (suffix, operation) pairs."""
    raw = ai.get("routes") if isinstance(ai, Mapping) else None
    if raw is None:
        return ()
    fld = "spec.policies.ai.routes"
    if not isinstance(raw, Mapping):
        ctx.fail(fld, "must be a mapping of path suffix (or *) to a route type such as Passthrough")
        return ()
    out: list[tuple[str, str]] = []
    for suffix, kind in raw.items():
        at = f"{fld}[{suffix!r}]"
        if not isinstance(suffix, str) or not (suffix == "*" or suffix.startswith("/") or suffix.startswith(":")):
            ctx.fail(at, "must be a path suffix such as /v1/models, or *")
            continue
        if not isinstance(kind, str):
            ctx.fail(at, f"must be one of {', '.join(ROUTE_TYPES)}, got {kind!r}")
            continue
        if kind in _UNSUPPORTED_ROUTE_TYPES:
            ctx.fail(at, f"route type {kind} is not supported by llmgw", "Unsupported")
            continue
        if kind not in ROUTE_TYPES:
            ctx.fail(at, f"must be one of {', '.join(ROUTE_TYPES)}, got {kind!r}")
            continue
        out.append((suffix, ROUTE_TYPES[kind]))
    return tuple(sorted(out))


def _one_timeout(ctx: _Ctx, policy: str) -> float | None:
    """The backend's timeout: Envoy has one per cluster, so every provider must agree."""
    seen = ctx.timeouts[policy]
    values = {v for v, _ in seen}
    if len(values) > 1:
        for value, fld in seen:
            if value is not None:
                ctx.fail(
                    fld,
                    "cannot be honoured per provider by llmgw (one timeout per backend): "
                    f"set it in spec.policies.{policy} or give every provider the same value",
                    "Unsupported",
                )
        return None
    return next(iter(values), None)


def _provider(
    ctx: _Ctx, where: str, block: Any, backend_policies: Mapping[str, Any], *, in_group: bool
) -> ProviderIR | None:
    if not isinstance(block, Mapping):
        ctx.fail(where, "must be a mapping")
        return None
    kinds = [k for k in PROVIDER_KIND_NAMES if k in block]
    if len(kinds) != 1:
        names = ", ".join(PROVIDER_KIND_NAMES)
        ctx.fail(where, f"set exactly one provider kind ({names}); found {kinds or 'none'}")
        return None
    kind = kinds[0]
    defaults = KINDS[kind]
    settings = block.get(kind) or {}
    if not isinstance(settings, Mapping):
        ctx.fail(f"{where}.{kind}", "must be a mapping")
        return None
    agentgateway = ctx.res.kind == "AgentgatewayBackend"
    ctx.unknown(where, block, _PROVIDER_FIELDS | {kind} | (_OVERRIDE_FIELDS if agentgateway else {"pricing"}))
    ctx.unknown(f"{where}.{kind}", settings, {"model", "guardrail", *defaults.fields})
    if agentgateway:
        block = _overrides(ctx, where, block)
        if block is None:
            return None
    kind_settings, setting_problems = settings_of(defaults, settings)
    for fld, message in setting_problems:
        ctx.fail(f"{where}.{kind}.{fld}", message)
    name = block.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        ctx.fail(f"{where}.name", "must be a non-empty string")
        return None
    if in_group and not name:
        ctx.fail(f"{where}.name", "is required for providers inside groups")
        return None
    name = name or kind
    model = settings.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        ctx.fail(f"{where}.{kind}.model", "must be a non-empty string")
        model = None

    host = block.get("host", defaults.host(kind_settings))
    if not isinstance(host, str) or not host:
        ctx.fail(f"{where}.host", f"is required for the {kind!r} provider")
        return None
    own_policies = block.get("policies")
    if isinstance(own_policies, Mapping):
        _check_policies(ctx, f"{where}.policies", own_policies)
    policies = _merge_policies(ctx, backend_policies, where, own_policies)
    if "auth" in block:
        if isinstance(own_policies, Mapping) and "auth" in own_policies:
            ctx.fail(f"{where}.auth", f"set either {where}.auth or {where}.policies.auth, not both")
            return None
        policies["auth"] = (block["auth"], f"{where}.auth")
    tls_policy, tls_field = policies.get("tls", (None, "spec.policies.tls"))
    host_overridden = "host" in block
    tls_on = tls_policy is not None or (defaults.tls and not host_overridden)
    port = block.get("port", defaults.port if not host_overridden else (443 if tls_on else 80))
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        ctx.fail(f"{where}.port", f"must be an integer 1-65535, got {port!r}")
        return None
    path = block.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        ctx.fail(f"{where}.path", "must start with /")
        path = None
    prefix = block.get("pathPrefix", defaults.path_prefix)
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        ctx.fail(f"{where}.pathPrefix", "must start with /")
        prefix = defaults.path_prefix
    tls = _tls(ctx, tls_field, tls_policy, host) if tls_on else None
    for policy in _TIMEOUTS:
        ctx.timeouts[policy].append(_timeout(policies, policy))
    auth_policy, auth_field = policies.get("auth", (None, "spec.policies.auth"))
    auth = _auth(ctx, auth_field, auth_policy, defaults, kind_settings)
    return ProviderIR(
        id=f"{ctx.res.key}/{name}",
        name=name,
        kind=kind,
        host=host,
        port=port,
        tls=tls,
        model=model,
        path=path,
        path_prefix=prefix.rstrip("/"),
        auth=auth,
        settings=tuple(sorted(kind_settings.items())),
        pricing=parse_pricing(ctx, f"{where}.pricing", block.get("pricing")),
        transforms=ctx.transforms.get(f"{where}.policies"),
    )


def _check_policies(ctx: _Ctx, where: str, policies: Mapping[str, Any], *, backend_level: bool = False) -> None:
    ctx.unknown(where, policies, _POLICY_FIELDS | {"ai"})
    if "ai" in policies:
        # Each AI policy llmgw does not act on is named, so a user sees which one is inactive.
        ctx.transforms[where] = ai_transforms.parse(policies["ai"], where=f"{where}.ai", fail=ctx.fail)
        ai = policies["ai"]
        for key in [k for k in ai if k not in ai_transforms.FIELDS] if isinstance(ai, Mapping) else []:
            if key == "promptGuard" and where == "spec.policies":
                continue  # read by ai_guards.prompt_guard (translate_backend)
            fld = f"{where}.ai.{key}"
            if key == "routes" and backend_level:
                continue  # read by _ai_routes
            if key == "routes":
                ctx.fail(fld, "is read per backend by llmgw: set it in spec.policies.ai.routes", "Unsupported")
                continue
            ctx.fail(fld, "is not supported by llmgw yet", "Unsupported")
    ctx.unknown(f"{where}.tls", policies.get("tls"), _TLS_FIELDS)
    for policy, fld in _TIMEOUTS.items():
        block = policies.get(policy)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            ctx.fail(f"{where}.{policy}", f"must be a mapping with `{fld}`")
            continue
        ctx.unknown(f"{where}.{policy}", block, {fld})
        value = block.get(fld)
        if value is not None and (not isinstance(value, str) or not parse_duration(value)):
            ctx.fail(f"{where}.{policy}.{fld}", f"must be a positive duration such as 30s or 500ms, got {value!r}")


def _timeout(policies: Mapping[str, tuple[Any, str]], policy: str) -> tuple[float | None, str]:
    """(seconds or None, field) of a provider's effective tcp.connectTimeout or http.requestTimeout."""
    fld = _TIMEOUTS[policy]
    block, where = policies.get(policy, (None, f"spec.policies.{policy}"))
    value = block.get(fld) if isinstance(block, Mapping) else None
    return (parse_duration(value) or None if isinstance(value, str) else None), f"{where}.{fld}"


def _overrides(ctx: _Ctx, where: str, block: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`hostOverride: {host, port}` and `pathOverride: {fullPath}` (kgateway) as `host`/`port`/`path`."""
    out = dict(block)
    host_override = out.pop("hostOverride", None)
    if host_override is not None:
        if not isinstance(host_override, Mapping):
            ctx.fail(f"{where}.hostOverride", "must be a mapping with `host` and `port`")
            return None
        ctx.unknown(f"{where}.hostOverride", host_override, {"host", "port"})
        for key in ("host", "port"):
            if key in host_override:
                if key in block:
                    ctx.fail(f"{where}.hostOverride.{key}", f"set either {where}.{key} or this, not both")
                    return None
                out[key] = host_override[key]
    path_override = out.pop("pathOverride", None)
    if path_override is not None:
        if not isinstance(path_override, Mapping) or "fullPath" not in path_override:
            ctx.fail(f"{where}.pathOverride", "must be a mapping with `fullPath`")
            return None
        ctx.unknown(f"{where}.pathOverride", path_override, {"fullPath"})
        if "path" in block:
            ctx.fail(f"{where}.pathOverride.fullPath", f"set either {where}.path or this, not both")
            return None
        out["path"] = path_override["fullPath"]
    return out


def _merge_policies(ctx: _Ctx, backend: Mapping[str, Any], where: str, provider: Any) -> dict[str, tuple[Any, str]]:
    """Policy name -> (value, field it was written in); a provider's own policies win."""
    merged = {str(k): (v, f"spec.policies.{k}") for k, v in backend.items()}
    if isinstance(provider, Mapping):
        merged.update({str(k): (v, f"{where}.policies.{k}") for k, v in provider.items()})
    elif provider is not None:
        ctx.fail(f"{where}.policies", "must be a mapping")
    return merged


# insecureSkipVerify -> (skip all verification, skip only the hostname (SAN) check)
_SKIP_VERIFY = {
    None: (False, False),
    False: (False, False),
    "All": (True, False),
    True: (True, False),
    "Hostname": (False, True),
}


def _tls(ctx: _Ctx, fld: str, policy: Any, host: str) -> TLSIR | None:
    if policy is None or policy is True:
        policy = {}
    if not isinstance(policy, Mapping):
        ctx.fail(fld, "must be a mapping")
        return None
    # Every field is checked (all problems reported); the backend is dropped if any failed.
    sni = policy.get("sni")
    if sni is not None and (not isinstance(sni, str) or not sni):
        ctx.fail(f"{fld}.sni", "must be a non-empty string")
        sni = None
    sni = sni or ("" if _is_ip(host) else host)
    skip = policy.get("insecureSkipVerify")
    if not isinstance(skip, str | bool | None) or skip not in _SKIP_VERIFY:
        ctx.fail(f"{fld}.insecureSkipVerify", f"must be All or Hostname, got {skip!r}")
        skip = None
    refs = policy.get("caCertificateRefs")
    if refs is not None and not isinstance(refs, list):
        ctx.fail(f"{fld}.caCertificateRefs", "must be a list")
        refs = None
    pems: list[str] = []
    for i, ref in enumerate(refs or []):
        kind = ref.get("kind", "ConfigMap") if isinstance(ref, Mapping) else None
        name = ref.get("name") if isinstance(ref, Mapping) else None
        store = {"Secret": ctx.secrets, "ConfigMap": ctx.configmaps}.get(str(kind))
        if store is None:
            ctx.fail(f"{fld}.caCertificateRefs[{i}].kind", "must be Secret or ConfigMap", "InvalidKind")
            continue
        if not isinstance(name, str) or not name:
            ctx.fail(f"{fld}.caCertificateRefs[{i}].name", "is required (a string)")
            continue
        data = store.get(f"{ctx.res.namespace}/{name}")
        if data is None:
            ctx.fail(
                f"{fld}.caCertificateRefs[{i}]",
                f"{kind} {ctx.res.namespace}/{name} not found",
                "InvalidCACertificateRef",
            )
            continue
        pem = data.get("ca.crt")
        if not pem:
            ctx.fail(
                f"{fld}.caCertificateRefs[{i}]",
                f"{kind} {name} has no key ca.crt",
                "InvalidCACertificateRef",
            )
            continue
        pems.append(pem)
    skip_all, skip_hostname = _SKIP_VERIFY[skip]
    return TLSIR(
        sni=sni,
        ca_pem="\n".join(pems) if pems else None,
        insecure_skip_verify=skip_all,
        skip_hostname_verify=skip_hostname,
    )


def _auth(ctx: _Ctx, fld: str, auth: Any, defaults: ProviderKind, settings: Mapping[str, str]) -> AuthIR | None:
    if auth is None:
        if defaults.ambient_auth is None:
            return None
        return AuthIR(
            header="",
            prefix="",
            value="",
            source=f"ambient {defaults.ambient_auth} credentials",
            kind=defaults.ambient_auth,
            params=region_params(settings),
        )
    if not isinstance(auth, Mapping):
        ctx.fail(fld, "must be a mapping")
        return None
    ctx.unknown(fld, auth, _AUTH_FIELDS | {"passthrough"})
    chosen = [k for k in auth if k in _AUTH_FIELDS | {"passthrough"} and k != "location"]
    if len(chosen) > 1:
        ctx.fail(fld, f"set exactly one of {', '.join(chosen)}")
        return None
    if "apiKey" in auth:
        # `apiKey: {secretRef: {name, key}}` or `apiKey: {key: ...}`: the same as the flat forms.
        api_key = auth["apiKey"]
        if not isinstance(api_key, Mapping) or len(set(api_key) & _API_KEY_FIELDS) != 1:
            ctx.fail(f"{fld}.apiKey", "must set exactly one of `secretRef` or `key`")
            return None
        ctx.unknown(f"{fld}.apiKey", api_key, _API_KEY_FIELDS)
        fld = f"{fld}.apiKey"
        flat = {k: v for k, v in auth.items() if k != "apiKey"}
        flat.update({k: v for k, v in api_key.items() if k in _API_KEY_FIELDS})
        auth = flat
    location = auth.get("location") or {}
    header_loc = location.get("header") if isinstance(location, Mapping) else None
    if location and not isinstance(header_loc, Mapping):
        ctx.fail(f"{fld}.location.header", "must be a mapping with `name` (and optional `prefix`)")
        return None
    header_loc = header_loc or {}
    if not isinstance(header_loc.get("name", ""), str) or not isinstance(header_loc.get("prefix", ""), str):
        ctx.fail(f"{fld}.location.header", "`name` and `prefix` must be strings")
        return None
    header = str(header_loc.get("name") or defaults.auth_header).lower()
    prefix_default = defaults.auth_prefix if header == "authorization" else ""
    prefix = str(header_loc.get("prefix", prefix_default) or "")
    if "key" in auth:
        key = auth["key"]
        if not isinstance(key, str) or not key.strip():
            ctx.fail(f"{fld}.key", "must be a non-empty string")
            return None
        if bad := header_value_problem(key.strip()):
            ctx.fail(f"{fld}.key", f"cannot be sent as an HTTP header: it {bad}")
            return None
        return AuthIR(header=header, prefix=prefix, value=key.strip(), source="inline key")
    if "secretRef" in auth:
        ref = auth["secretRef"]
        if not isinstance(ref, Mapping) or not ref.get("name"):
            ctx.fail(f"{fld}.secretRef.name", "is required")
            return None
        ctx.unknown(f"{fld}.secretRef", ref, _SECRET_REF_FIELDS)
        secret_key = f"{ctx.res.namespace}/{ref['name']}"
        data = ctx.secrets.get(secret_key)
        if data is None:
            ctx.fail(f"{fld}.secretRef", f"Secret {secret_key} not found", "BackendNotFound")
            return None
        item = str(ref.get("key") or "Authorization")
        value = data.get(item)
        if value is None:
            ctx.fail(
                f"{fld}.secretRef.key",
                f"Secret {secret_key} has no key {item!r}",
                "BackendNotFound",
            )
            return None
        if not value.strip():
            ctx.fail(f"{fld}.secretRef.key", f"Secret {secret_key} key {item!r} is empty")
            return None
        if bad := header_value_problem(value.strip()):
            ctx.fail(
                f"{fld}.secretRef.key",
                f"Secret {secret_key} key {item!r} cannot be sent as an HTTP header: it {bad}",
            )
            return None
        return AuthIR(header=header, prefix=prefix, value=value.strip(), source=f"secret {secret_key}")
    for kind in ("aws", "gcp", "azure"):
        if kind in auth:
            return cloud_auth(ctx, f"{fld}.{kind}", kind, auth[kind], settings)
    if "passthrough" in auth:
        # agentgateway: reuse the client's own token; the provider gets the credential the client
        # sent, at the provider's header (or `location`), instead of one the gateway holds.
        passthrough = auth["passthrough"]
        if passthrough is not None and (not isinstance(passthrough, Mapping) or passthrough):
            ctx.fail(f"{fld}.passthrough", "takes no fields (write `passthrough: {}`)")
            return None
        return AuthIR(header=header, prefix=prefix, value="", source="the client's own credential", kind="passthrough")
    if not [k for k in auth if k in _AUTH_FIELDS and k != "location"]:
        ctx.fail(fld, "set one of `key`, `secretRef`, `apiKey`, `aws`, `gcp`, `azure` or `passthrough`")
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- the same checks for plain backends (plain_backends.py), each with its own problem list ----------


def check_policies(
    res: Resource, where: str, policies: Mapping[str, Any], *, known: Collection[str], ai: bool
) -> list[Problem]:
    """Problems of a `policies` block: fields outside `known`, malformed tls/tcp/http blocks."""
    ctx = _Ctx(res, {}, {})
    if ai:
        _check_policies(ctx, where, policies)
        return ctx.problems
    ctx.unknown(where, policies, known)
    trimmed = {k: v for k, v in policies.items() if k in known}
    _check_policies(ctx, where, trimmed)
    return ctx.problems


def tls_policy(
    res: Resource,
    fld: str,
    policy: Any,
    host: str,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    configmaps: Mapping[str, Mapping[str, str]],
) -> tuple[TLSIR | None, list[Problem]]:
    ctx = _Ctx(res, secrets, configmaps)
    tls = _tls(ctx, fld, policy, host)
    return tls, ctx.problems


def secret_auth(
    res: Resource, fld: str, auth: Any, defaults: ProviderKind, *, secrets: Mapping[str, Mapping[str, str]]
) -> tuple[AuthIR | None, list[Problem]]:
    """A `key`/`secretRef`/`apiKey`/`passthrough` credential, resolved (no cloud kinds)."""
    ctx = _Ctx(res, secrets, {})
    auth_ir = _auth(ctx, fld, auth, defaults, {})
    return auth_ir, ctx.problems
