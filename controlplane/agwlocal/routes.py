"""agentgateway listeners and routes (`binds`, or `gateways` + `routes`) -> Gateways and HTTPRoutes.

A bind (or named gateway) becomes a Gateway of class llmgw, each of its
listeners a Gateway listener, and each route one HTTPRoute with one rule:
its matches, its filters (`urlRewrite`, header modifiers), its timeouts and
retry, and one backendRef per `ai` backend. `backendAuth`/`backendTLS` on the
route are backend policies in Gateway API terms, so they go to the route's
AgentgatewayBackends (backends.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.agwlocal.backends import Policies, ai_backend, policies_block
from controlplane.agwlocal.context import GATEWAY_API, GATEWAY_CLASS, Out, join, string
from controlplane.agwlocal.policies import backend_policies

_BIND_FIELDS = ("port", "listeners", "tunnelProtocol", "mode")
_BIND_DEFAULTS = {"tunnelProtocol": "direct", "mode": "standard"}
_LISTENER_FIELDS = ("name", "hostname", "protocol", "routes")
_GATEWAY_FIELDS = ("port", "protocol", "listeners")
_GATEWAY_LISTENER_FIELDS = ("name", "hostname", "protocol")
_ROUTE_FIELDS = ("name", "ruleName", "hostnames", "matches", "policies", "backends")
_ROUTE_POLICY_FIELDS = (
    "urlRewrite",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "timeout",
    "retry",
    "backendAuth",
    "backendTLS",
)
_ROUTE_BACKEND_FIELDS = ("ai", "backend", "weight", "policies")
_PATH_TYPES = {"exact": "Exact", "pathPrefix": "PathPrefix", "regex": "RegularExpression"}
_VALUE_TYPES = {"exact": "Exact", "regex": "RegularExpression"}

Parent = dict[str, str]  # a Gateway API parentRef


def binds(out: Out, raw: Any, *, named: Mapping[str, Any]) -> None:
    """`binds: [{port, listeners: [{name, hostname, protocol, routes}]}]`."""
    for i, bind in enumerate(out.items("binds", raw)):
        where = f"binds[{i}]"
        b = out.mapping(where, bind)
        if b is None:
            continue
        out.unknown(where, b, _BIND_FIELDS)
        for key, default in _BIND_DEFAULTS.items():
            if b.get(key, default) != default:
                out.unsupported(join(where, key), f"only {default!r}")
        port = _port(out, join(where, "port"), b.get("port"))
        if port is None:
            continue
        gateway = out.unique("Gateway", out.name(port))
        listeners: list[dict[str, Any]] = []
        origin = [("", where), ("spec", where)]
        for j, raw_listener in enumerate(out.items(join(where, "listeners"), b.get("listeners"))):
            lw = f"{where}.listeners[{j}]"
            lst = out.mapping(lw, raw_listener)
            if lst is None:
                continue
            out.unknown(lw, lst, _LISTENER_FIELDS)
            listener = _listener(out, lw, lst, port=port, default_name=f"listener-{j}")
            if listener is None:
                continue
            origin.append((f"spec.listeners[{len(listeners)}]", lw))
            listeners.append(listener)
            parent = {"name": gateway, "sectionName": listener["name"]}
            for k, route in enumerate(out.items(join(lw, "routes"), lst.get("routes"))):
                translate_route(out, f"{lw}.routes[{k}]", route, parents=[parent], named=named)
        if listeners:
            _gateway(out, gateway, listeners, origin)


def gateways(out: Out, raw: Any) -> dict[str, list[Parent]]:
    """`gateways: {name: {port, protocol, listeners}}` -> the parentRefs each reference resolves to."""
    refs: dict[str, list[Parent]] = {}
    gws = out.mapping("gateways", raw)
    for gname, gw in (gws or {}).items():
        where = f"gateways.{gname}"
        g = out.mapping(where, gw)
        if g is None:
            continue
        out.unknown(where, g, _GATEWAY_FIELDS)
        port = _port(out, join(where, "port"), g.get("port"))
        if port is None:
            continue
        if g.get("protocol", "HTTP") != "HTTP":
            out.unsupported(join(where, "protocol"), "only HTTP")
            continue
        gateway = out.unique("Gateway", out.name(gname))
        origin = [("", where), ("spec", where)]
        listeners: list[dict[str, Any]] = []
        raw_listeners = out.items(join(where, "listeners"), g.get("listeners")) or [{"name": "default"}]
        for j, raw_listener in enumerate(raw_listeners):
            lw = f"{where}.listeners[{j}]"
            lst = out.mapping(lw, raw_listener)
            if lst is None:
                continue
            out.unknown(lw, lst, _GATEWAY_LISTENER_FIELDS)
            listener = _listener(out, lw, lst, port=port, default_name=f"listener-{j}")
            if listener is None:
                continue
            origin.append((f"spec.listeners[{len(listeners)}]", lw))
            listeners.append(listener)
            parent = {"name": gateway, "sectionName": listener["name"]}
            refs.setdefault(str(gname), []).append(parent)
            refs[f"{gname}/{lst.get('name', listener['name'])}"] = [parent]
        if listeners:
            _gateway(out, gateway, listeners, origin)
    return refs


def parents_of(out: Out, where: str, value: Any, refs: Mapping[str, list[Parent]]) -> list[Parent] | None:
    """`gateways: name | [name, name/listener]`; none given: the gateway named `default`, as agentgateway."""
    names = [value] if isinstance(value, str) else out.items(where, value)
    if not names:
        if "default" in refs:
            return list(refs["default"])
        out.fail(where, "must name the gateways this attaches to (no gateway named `default` to default to)")
        return None
    parents: list[Parent] = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in refs:
            out.fail(f"{where}[{i}]" if not isinstance(value, str) else where, f"unknown gateway reference {name!r}")
            return None
        parents.extend(p for p in refs[name] if p not in parents)
    return parents


def attached_routes(out: Out, raw: Any, refs: Mapping[str, list[Parent]], *, named: Mapping[str, Any]) -> None:
    """Top-level `routes:` of the `gateways` form, each attached through its `gateways` references."""
    for k, route in enumerate(out.items("routes", raw)):
        where = f"routes[{k}]"
        r = out.mapping(where, route)
        if r is None:
            continue
        parents = parents_of(out, join(where, "gateways"), r.get("gateways"), refs)
        if parents is not None:
            translate_route(out, where, {k: v for k, v in r.items() if k != "gateways"}, parents=parents, named=named)


def _port(out: Out, where: str, value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        out.fail(where, f"must be a port number 1-65535, got {value!r}")
        return None
    return value


def _listener(out: Out, where: str, lst: Mapping[str, Any], *, port: int, default_name: str) -> dict[str, Any] | None:
    if lst.get("protocol", "HTTP") != "HTTP":
        out.unsupported(join(where, "protocol"), "only HTTP listeners")
        return None
    name = lst.get("name")
    listener: dict[str, Any] = {
        "name": out.name(name).removeprefix(out.base + "-") if isinstance(name, str) and name else default_name,
        "protocol": "HTTP",
        "port": port,
    }
    if lst.get("hostname") is not None:
        listener["hostname"] = lst["hostname"]
    return listener


def _gateway(out: Out, name: str, listeners: list[dict[str, Any]], origin: list[tuple[str, str]]) -> None:
    spec = {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners}
    out.emit(api_version=GATEWAY_API, kind="Gateway", name=name, body={"spec": spec}, origin=origin)


def translate_route(out: Out, where: str, route: Any, *, parents: list[Parent], named: Mapping[str, Any]) -> None:
    """One agentgateway route -> an HTTPRoute with one rule (and an AgentgatewayBackend per `ai` backend)."""
    r = out.mapping(where, route)
    if r is None:
        return
    out.unknown(where, r, _ROUTE_FIELDS)
    given = r.get("name")
    name = out.unique("HTTPRoute", out.name(given if isinstance(given, str) and given else "route"))
    rule: dict[str, Any] = {}
    origin = [("", where), ("spec", where), ("spec.hostnames", join(where, "hostnames"))]
    if r.get("ruleName") is not None:
        rule["name"] = string(out, join(where, "ruleName"), r["ruleName"])
    matches = [
        _match(out, f"{where}.matches[{m}]", raw)
        for m, raw in enumerate(out.items(join(where, "matches"), r.get("matches")))
    ]
    if matches:
        rule["matches"] = matches
        origin.append(("spec.rules[0].matches", join(where, "matches")))
    # Every field is checked (all problems reported) even when one of them already failed.
    pol = out.mapping(join(where, "policies"), r.get("policies")) or {}
    pw = join(where, "policies")
    out.unknown(pw, pol, _ROUTE_POLICY_FIELDS)
    ok = _route_policies(out, pw, pol, rule, origin) and all(m is not None for m in matches)
    inherited: list[Policies] = []
    auth_tls = {k: v for k, v in pol.items() if k in ("backendAuth", "backendTLS")}
    if auth_tls:
        inherited.append(backend_policies(out, pw, auth_tls, secret_name=f"{name}-auth"))
    refs: list[dict[str, Any]] = []
    for b, raw in enumerate(out.items(join(where, "backends"), r.get("backends"))):
        bw = f"{where}.backends[{b}]"
        ref = _route_backend(out, bw, raw, route=name, inherited=inherited, named=named)
        if ref is not None:
            origin.append((f"spec.rules[0].backendRefs[{len(refs)}]", bw))
            refs.append(ref)
    rule["backendRefs"] = refs
    if not ok:
        return
    spec: dict[str, Any] = {"parentRefs": parents, "rules": [rule]}
    if r.get("hostnames") is not None:
        spec["hostnames"] = r["hostnames"]
    out.emit(api_version=GATEWAY_API, kind="HTTPRoute", name=name, body={"spec": spec}, origin=origin)


def _route_backend(
    out: Out, where: str, raw: Any, *, route: str, inherited: list[Policies], named: Mapping[str, Any]
) -> dict[str, Any] | None:
    b = out.mapping(where, raw)
    if b is None:
        return None
    out.unknown(where, b, _ROUTE_BACKEND_FIELDS)
    own = out.mapping(join(where, "policies"), b.get("policies"))
    if own is None:
        return None
    secret = f"{route}-{where.rsplit('[', 1)[-1].rstrip(']')}"
    layers: list[tuple[Any, str]] = []
    if "ai" in b:
        ai, ai_where = b["ai"], join(where, "ai")
    elif "backend" in b:
        ref = b["backend"]
        if not isinstance(ref, str) or ref not in named:
            out.fail(join(where, "backend"), f"no ai backend named {ref!r} in the top-level backends")
            return None
        ai, ai_where, named_policies, named_where = named[ref]
        layers.append((named_policies, named_where))
    else:
        return None  # a non-AI backend kind: reported by unknown() above
    layers.append((own, join(where, "policies")))
    policies = list(inherited)
    for n, (raw_policies, pw) in enumerate(layers):
        block = out.mapping(pw, raw_policies)
        if block is None:
            return None
        if block:
            policies.append(policies_block(out, pw, block, secret_name=f"{secret}-{n}"))
    weight = b.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        out.fail(join(where, "weight"), "must be a non-negative integer")
        return None
    ai_name = ai.get("name") if isinstance(ai, Mapping) else None
    backend = ai_backend(
        out, ai_where, ai, name=out.name(route.removeprefix(out.base + "-"), ai_name or "ai"), inherited=policies
    )
    if backend is None:
        return None
    return {"group": "agentgateway.dev", "kind": "AgentgatewayBackend", "name": backend, "weight": weight}


def _match(out: Out, where: str, raw: Any) -> dict[str, Any] | None:
    m = out.mapping(where, raw)
    if m is None:
        return None
    out.unknown(where, m, ("path", "headers", "method", "query"))
    result: dict[str, Any] = {}
    if m.get("path") is not None:
        path = _one_of(out, join(where, "path"), m["path"], _PATH_TYPES)
        if path is None:
            return None
        result["path"] = path
    for key, target in (("headers", "headers"), ("query", "queryParams")):
        items = []
        for i, item in enumerate(out.items(join(where, key), m.get(key))):
            iw = f"{where}.{key}[{i}]"
            it = out.mapping(iw, item)
            if it is None:
                return None
            out.unknown(iw, it, ("name", "value"))
            value = _one_of(out, join(iw, "value"), it.get("value"), _VALUE_TYPES)
            if value is None:
                return None
            items.append({"name": it.get("name"), **value})
        if items:
            result[target] = items
    if m.get("method") is not None:
        result["method"] = m["method"]
    return result


def _one_of(out: Out, where: str, raw: Any, types: Mapping[str, str]) -> dict[str, Any] | None:
    """`{exact: v}` / `{pathPrefix: v}` / `{regex: v}` -> `{type, value}`."""
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in types:
        out.fail(where, f"must be a mapping with exactly one of {', '.join(types)}")
        return None
    ((kind, value),) = raw.items()
    return {"type": types[kind], "value": value}


def _route_policies(
    out: Out, where: str, pol: Mapping[str, Any], rule: dict[str, Any], origin: list[tuple[str, str]]
) -> bool:
    """The route policies that are Gateway API rule fields: filters, timeouts, retry."""
    ok = True
    filters: list[dict[str, Any]] = []
    if pol.get("urlRewrite") is not None:
        rewrite = _url_rewrite(out, join(where, "urlRewrite"), pol["urlRewrite"])
        ok = rewrite is not None
        if rewrite:
            origin.append((f"spec.rules[0].filters[{len(filters)}]", join(where, "urlRewrite")))
            filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
    for key in ("requestHeaderModifier", "responseHeaderModifier"):
        if pol.get(key) is None:
            continue
        mod = _header_modifier(out, join(where, key), pol[key])
        if mod is None:
            ok = False
            continue
        origin.append((f"spec.rules[0].filters[{len(filters)}]", join(where, key)))
        filters.append({"type": key[0].upper() + key[1:], key: mod})
    if filters:
        rule["filters"] = filters
    timeout = out.mapping(join(where, "timeout"), pol.get("timeout")) or {}
    out.unknown(join(where, "timeout"), timeout, ("requestTimeout", "backendRequestTimeout"))
    timeouts = {
        t: timeout[k]
        for k, t in (("requestTimeout", "request"), ("backendRequestTimeout", "backendRequest"))
        if timeout.get(k) is not None
    }
    if timeouts:
        rule["timeouts"] = timeouts
        origin.append(("spec.rules[0].timeouts", join(where, "timeout")))
    retry = out.mapping(join(where, "retry"), pol.get("retry")) or {}
    if retry:
        rw = join(where, "retry")
        out.unknown(rw, retry, ("attempts", "backoff", "codes"))
        attempts = retry.get("attempts", 1)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            out.fail(join(rw, "attempts"), "must be an integer >= 1 (attempts, the first one included)")
            return False
        # agentgateway counts every attempt; Gateway API counts the retries after the first.
        rule["retry"] = {"attempts": attempts - 1, "codes": retry.get("codes", [])}
        if retry.get("backoff") is not None:
            rule["retry"]["backoff"] = retry["backoff"]
        origin.append(("spec.rules[0].retry", rw))
    return ok


def _url_rewrite(out: Out, where: str, raw: Any) -> dict[str, Any] | None:
    rw = out.mapping(where, raw)
    if rw is None:
        return None
    out.unknown(where, rw, ("authority", "path"))
    result: dict[str, Any] | None = {}
    authority = rw.get("authority")
    # `auto`: the backend's host, which AI routes always send (auto_host_rewrite).
    if isinstance(authority, Mapping) and set(authority) == {"host"}:
        result = {"hostname": authority["host"]}
    elif authority not in (None, "auto"):
        out.unsupported(join(where, "authority"), "only auto or {host: ...}")
        result = None
    if rw.get("path") is not None and result is not None:
        path = rw["path"]
        if isinstance(path, Mapping) and set(path) == {"prefix"}:
            result["path"] = {"type": "ReplacePrefixMatch", "replacePrefixMatch": path["prefix"]}
        elif isinstance(path, Mapping) and set(path) == {"full"}:
            result["path"] = {"type": "ReplaceFullPath", "replaceFullPath": path["full"]}
        else:
            out.fail(join(where, "path"), "must be {prefix: ...} or {full: ...}")
            return None
    return result


def _header_modifier(out: Out, where: str, raw: Any) -> dict[str, Any] | None:
    """`{add: {name: value}, set: {...}, remove: [names]}` -> Gateway API's lists of {name, value}."""
    mod = out.mapping(where, raw)
    if mod is None:
        return None
    out.unknown(where, mod, ("add", "set", "remove"))
    result: dict[str, Any] = {}
    for key in ("add", "set"):
        values = out.mapping(join(where, key), mod.get(key))
        if values is None:
            return None
        if values:
            result[key] = [{"name": k, "value": v} for k, v in values.items()]
    if mod.get("remove") is not None:
        result["remove"] = out.items(join(where, "remove"), mod["remove"])
    return result
