"""agentgateway's simplified `llm:` config (a list of models) -> a Gateway, one HTTPRoute, AgentgatewayBackends.

`llm.models[].name` is the model a client asks for: it becomes a match on the
model header (`*` alone matches any model, `prefix/*` a pattern). `provider`
and `params` become the backend's provider block (`params.model` fixes the
model sent upstream), `params.apiKey` or `auth` its credential. The models are
served on `llm.port` (agentgateway's default 4000) or on the named `gateways`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from controlplane.agwlocal.backends import PROVIDERS, provider_settings, split_host
from controlplane.agwlocal.context import AGW_API, GATEWAY_API, GATEWAY_CLASS, Out, join, string
from controlplane.agwlocal.policies import auth, inline_key, tls
from controlplane.agwlocal.routes import Parent, parents_of
from extproc import wire

DEFAULT_PORT = 4000
_LLM_FIELDS = ("port", "models", "gateways", "providers")
_MODEL_FIELDS = ("name", "provider", "params", "auth", "backendTLS", "tls", "matches")
# provider -> {param: the provider-block field it sets}
_PARAMS: dict[str, dict[str, str]] = {
    "openAI": {"model": "model"},
    "anthropic": {"model": "model"},
    "gemini": {"model": "model"},
    "vertex": {"model": "model", "vertexRegion": "region", "vertexProject": "projectId"},
    "bedrock": {"model": "model", "awsRegion": "region"},
    "azure": {
        "model": "model",
        "azureResourceName": "resourceName",
        "azureResourceType": "resourceType",
        "azureApiVersion": "apiVersion",
        "azureProjectName": "projectName",
    },
}
_ENDPOINT_PARAMS = ("apiKey", "baseUrl", "hostOverride", "pathOverride", "pathPrefix", "tokenize")
_PROVIDER_NAMES = {"openai": "openAI", "openAI": "openAI", **{k: k for k in _PARAMS}}
# agentgateway's OpenAI-compatible presets (crates/llm/src/custom.rs) -> their base URL; they run
# as llmgw `custom` providers there. `cohere` is not here: its chat path is not OpenAI's.
PRESETS = {
    "ollama": "http://localhost:11434/v1",
    "baseten": "https://inference.baseten.co/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "deepseek": "https://api.deepseek.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "huggingface": "https://router.huggingface.co/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "togetherai": "https://api.together.xyz/v1",
    "xai": "https://api.x.ai/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
}


def llm(out: Out, raw: Any, refs: Mapping[str, list[Parent]]) -> None:
    cfg = out.mapping("llm", raw)
    if cfg is None:
        return
    out.unknown("llm", cfg, _LLM_FIELDS, expand=True)
    parents: list[Parent] | None
    if "gateways" in cfg or ("port" not in cfg and "default" in refs):
        parents = parents_of(out, "llm.gateways", cfg.get("gateways"), refs)
    else:
        parents = _own_gateway(out, cfg.get("port", DEFAULT_PORT))
    if parents is None:
        return
    providers = _providers(out, cfg.get("providers"))
    route = out.unique("HTTPRoute", out.name("llm"))
    rules: list[dict[str, Any]] = []
    origin = [("", "llm"), ("spec", "llm")]
    for i, model in enumerate(out.items("llm.models", cfg.get("models"))):
        where = f"llm.models[{i}]"
        rule = _model(out, where, _resolve_reference(out, where, model, providers))
        if rule is not None:
            origin += [(f"spec.rules[{len(rules)}]", where), (f"spec.rules[{len(rules)}].backendRefs[0]", where)]
            rules.append(rule)
    if not rules:
        if not cfg.get("models"):
            out.fail("llm.models", "needs at least one model")
        return
    spec = {"parentRefs": parents, "rules": rules}
    out.emit(api_version=GATEWAY_API, kind="HTTPRoute", name=route, body={"spec": spec}, origin=origin)


def _own_gateway(out: Out, port: Any) -> list[Parent] | None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        out.fail("llm.port", f"must be a port number 1-65535, got {port!r}")
        return None
    name = out.unique("Gateway", out.name("llm", port))
    spec = {"gatewayClassName": GATEWAY_CLASS, "listeners": [{"name": "llm", "protocol": "HTTP", "port": port}]}
    origin = [("", "llm"), ("spec", "llm"), ("spec.listeners[0]", "llm.port")]
    out.emit(api_version=GATEWAY_API, kind="Gateway", name=name, body={"spec": spec}, origin=origin)
    return [{"name": name, "sectionName": "llm"}]


UNRESOLVED = object()  # a model whose provider reference failed (reported once)


def _providers(out: Out, raw: Any) -> dict[str, Mapping[str, Any]]:
    """`llm.providers[]`: named provider settings that models use with `provider: {reference: name}`."""
    named: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(out.items("llm.providers", raw)):
        where = f"llm.providers[{i}]"
        prov = out.mapping(where, item)
        if prov is None:
            continue
        out.unknown(where, prov, ("name", "provider", "params"))
        name = string(out, join(where, "name"), prov.get("name"))
        if name is None:
            continue
        if name in named:
            out.fail(join(where, "name"), f"duplicate provider name {name!r}")
            continue
        named[name] = prov
    return named


def _resolve_reference(out: Out, where: str, model: Any, providers: Mapping[str, Mapping[str, Any]]) -> Any:
    """`provider: {reference: name}`: that provider's kind and params (the model's own `params.model` wins)."""
    if not isinstance(model, Mapping) or not isinstance(model.get("provider"), Mapping):
        return model
    ref = model["provider"]
    if set(ref) != {"reference"}:
        return model  # `custom` and the like: reported by _model
    target = providers.get(ref["reference"]) if isinstance(ref["reference"], str) else None
    if target is None:
        out.fail(join(where, "provider.reference"), f"no llm.providers entry named {ref['reference']!r}")
        return UNRESOLVED
    own = model.get("params")
    if isinstance(own, Mapping) and set(own) - {"model"}:
        out.fail(join(where, "params"), "a model that references a provider can only set params.model")
        return UNRESOLVED
    params = dict(target.get("params") or {})
    if isinstance(own, Mapping) and own.get("model") is not None:
        params["model"] = own["model"]
    return {**model, "provider": target.get("provider"), "params": params}


def _model(out: Out, where: str, raw: Any) -> dict[str, Any] | None:
    if raw is UNRESOLVED:
        return None  # already reported
    m = out.mapping(where, raw)
    if m is None:
        return None
    out.unknown(where, m, _MODEL_FIELDS)
    name = string(out, join(where, "name"), m.get("name"))
    provider = m.get("provider")
    if not isinstance(provider, str) or (provider not in _PROVIDER_NAMES and provider not in PRESETS):
        known = ", ".join(sorted({*_PROVIDER_NAMES, *PRESETS}))
        out.unsupported(join(where, "provider"), f"llmgw knows {known}")
        return None
    params = out.mapping(join(where, "params"), m.get("params"))
    if name is None or params is None:
        return None
    pw = join(where, "params")
    block: dict[str, Any]
    if provider in PRESETS:
        out.unknown(pw, params, ("model", *_ENDPOINT_PARAMS))
        block = {"custom": {"model": params["model"]} if params.get("model") is not None else {}}
        if all(params.get(k) is None for k in ("baseUrl", "hostOverride")):
            params = {**params, "baseUrl": PRESETS[provider]}
    else:
        kind = _PROVIDER_NAMES[provider]
        out.unknown(pw, params, (*_PARAMS[kind], *_ENDPOINT_PARAMS))
        settings = provider_settings(out, pw, kind, {f: params[p] for p, f in _PARAMS[kind].items() if p in params})
        if settings is None:
            return None
        block = {PROVIDERS[kind][0]: settings}
    backend = out.unique("AgentgatewayBackend", out.name("llm", name.replace("*", "any")))
    origin = [("", where), ("spec", where), ("spec.ai.provider", pw)]
    policies: dict[str, Any] = {}
    if not _endpoint(out, pw, params, block, policies, origin):
        return None
    if params.get("tokenize") not in (None, False):
        out.unsupported(join(pw, "tokenize"))
    if params.get("apiKey") is not None and m.get("auth") is not None:
        out.fail(join(where, "auth"), "set either params.apiKey or auth, not both")
        return None
    if params.get("apiKey") is not None:
        credential = inline_key(out, join(pw, "apiKey"), params["apiKey"], secret_name=backend)
        origin.append(("spec.policies.auth", join(pw, "apiKey")))
    elif m.get("auth") is not None:
        credential = auth(out, join(where, "auth"), m["auth"], secret_name=backend)
        origin.append(("spec.policies.auth", join(where, "auth")))
    else:
        credential = {}
    if credential is None:
        return None
    if credential:
        policies["auth"] = credential
    for key in ("backendTLS", "tls"):
        if m.get(key) is not None:
            if "tls" in policies and key == "tls":
                out.fail(join(where, key), "set either backendTLS or tls, not both")
                return None
            got = tls(out, join(where, key), m[key])
            if got is None:
                return None
            policies["tls"] = got
            origin.append(("spec.policies.tls", join(where, key)))
    spec = {"ai": {"provider": block}, **({"policies": policies} if policies else {})}
    out.emit(api_version=AGW_API, kind="AgentgatewayBackend", name=backend, body={"spec": spec}, origin=origin)
    matches = _matches(out, where, name, m.get("matches"))
    if matches is None:
        return None
    rule: dict[str, Any] = {
        "backendRefs": [{"group": "agentgateway.dev", "kind": "AgentgatewayBackend", "name": backend}]
    }
    if matches:
        rule["matches"] = matches
    return rule


def _endpoint(
    out: Out,
    where: str,
    params: Mapping[str, Any],
    block: dict[str, Any],
    policies: dict[str, Any],
    origin: list[tuple[str, str]],
) -> bool:
    """`baseUrl` (or the older hostOverride/pathOverride/pathPrefix) -> host, port, path prefix, TLS."""
    base = params.get("baseUrl")
    if base is not None:
        if any(params.get(k) is not None for k in ("hostOverride", "pathOverride", "pathPrefix")):
            out.fail(join(where, "baseUrl"), "set either baseUrl or hostOverride/pathOverride/pathPrefix")
            return False
        url = urlsplit(str(base))
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment or url.username:
            out.fail(join(where, "baseUrl"), "must be an http(s) URL with a host and no query, fragment or user")
            return False
        block["host"] = url.hostname
        block["port"] = url.port or (443 if url.scheme == "https" else 80)
        if url.path.rstrip("/"):
            block["pathPrefix"] = url.path.rstrip("/")
        if url.scheme == "https":
            policies["tls"] = {}
        origin += [(f"spec.ai.provider.{k}", join(where, "baseUrl")) for k in ("host", "port", "pathPrefix")]
        return True
    if params.get("hostOverride") is not None:
        hp = split_host(out, join(where, "hostOverride"), params["hostOverride"])
        if hp is None:
            return False
        block["host"] = hp[0]
        if hp[1] is not None:
            block["port"] = hp[1]
    for key, target in (("pathOverride", "path"), ("pathPrefix", "pathPrefix")):
        if params.get(key) is not None:
            block[target] = params[key]
            origin.append((f"spec.ai.provider.{target}", join(where, key)))
    return True


def _matches(out: Out, where: str, name: str, raw: Any) -> list[dict[str, Any]] | None:
    """The model-name match, alone or added to each `matches[].headers` list."""
    model: list[dict[str, Any]] = []
    if name != "*":
        if "*" in name:
            pattern = ".*".join(re.escape(part) for part in name.split("*"))
            model = [{"type": "RegularExpression", "name": wire.MODEL_HEADER, "value": pattern}]
        else:
            model = [{"type": "Exact", "name": wire.MODEL_HEADER, "value": name}]
    extra = out.items(join(where, "matches"), raw)
    if not extra:
        return [{"headers": model}] if model else []
    result = []
    for i, item in enumerate(extra):
        iw = f"{where}.matches[{i}]"
        m = out.mapping(iw, item)
        if m is None:
            return None
        out.unknown(iw, m, ("headers",))
        headers = []
        for h, header in enumerate(out.items(join(iw, "headers"), m.get("headers"))):
            hw = f"{iw}.headers[{h}]"
            hd = out.mapping(hw, header)
            if hd is None:
                return None
            out.unknown(hw, hd, ("name", "value"))
            value = hd.get("value")
            if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in ("exact", "regex"):
                out.fail(join(hw, "value"), "must be a mapping with exactly one of exact, regex")
                return None
            ((vkind, text),) = value.items()
            headers.append(
                {"type": "Exact" if vkind == "exact" else "RegularExpression", "name": hd.get("name"), "value": text}
            )
        result.append({"headers": headers + model})
    return result
