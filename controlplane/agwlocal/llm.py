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
_LLM_FIELDS = ("port", "models", "gateways")
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
    route = out.unique("HTTPRoute", out.name("llm"))
    rules: list[dict[str, Any]] = []
    origin = [("", "llm"), ("spec", "llm")]
    for i, model in enumerate(out.items("llm.models", cfg.get("models"))):
        where = f"llm.models[{i}]"
        rule = _model(out, where, model)
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


def _model(out: Out, where: str, raw: Any) -> dict[str, Any] | None:
    m = out.mapping(where, raw)
    if m is None:
        return None
    out.unknown(where, m, _MODEL_FIELDS)
    name = string(out, join(where, "name"), m.get("name"))
    provider = m.get("provider")
    if not isinstance(provider, str) or provider not in _PROVIDER_NAMES:
        out.unsupported(join(where, "provider"), f"llmgw knows {', '.join(sorted(set(_PROVIDER_NAMES)))}")
        return None
    kind = _PROVIDER_NAMES[provider]
    params = out.mapping(join(where, "params"), m.get("params"))
    if name is None or params is None:
        return None
    pw = join(where, "params")
    out.unknown(pw, params, (*_PARAMS[kind], *_ENDPOINT_PARAMS))
    settings = provider_settings(out, pw, kind, {f: params[p] for p, f in _PARAMS[kind].items() if p in params})
    if settings is None:
        return None
    backend = out.unique("AgentgatewayBackend", out.name("llm", name.replace("*", "any")))
    block: dict[str, Any] = {PROVIDERS[kind][0]: settings}
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
