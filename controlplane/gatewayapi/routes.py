"""GatewayClass, Gateway and HTTPRoute -> ListenerIR with sorted routes.

Implements the Gateway API subset from DESIGN.md: listeners (HTTP, hostname),
path/header/query/method matches, precedence, URLRewrite, header modifiers,
weighted backendRefs and timeouts. Pure: resources in, IR and problems out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.ir import (
    DEFAULT_REQUEST_TIMEOUT_S,
    HeaderModIR,
    ListenerIR,
    MatchIR,
    RewriteIR,
    RouteIR,
    StringMatchIR,
    VirtualHostIR,
    WeightedBackendIR,
)
from controlplane.resources import Problem, Resource

CONTROLLER_NAME = "llmgw.dev/gateway-controller"
GATEWAY_API = "gateway.networking.k8s.io"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


def parse_duration(text: str) -> float | None:
    """Gateway API duration (`1h2m3s4ms` subset) in seconds; None if malformed."""
    m = _DURATION.match(text.strip())
    if not m or not text.strip():
        return None
    h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


@dataclass(frozen=True)
class GatewayListener:
    gateway: Resource
    name: str
    port: int
    hostname: str | None


def gateway_listeners(
    gateways: Iterable[Resource], classes: Mapping[str, Resource]
) -> tuple[list[GatewayListener], list[Problem]]:
    """Listeners of every Gateway whose class is ours (or whose class is not given in files)."""
    out: list[GatewayListener] = []
    problems: list[Problem] = []
    for gw in gateways:
        spec = gw.spec
        cls = spec.get("gatewayClassName")
        gc = classes.get(str(cls))
        if gc is not None and gc.spec.get("controllerName") != CONTROLLER_NAME:
            continue  # someone else's Gateway
        if not cls:
            problems.append(Problem(gw.file, gw.ref, "spec.gatewayClassName", "is required"))
            continue
        listeners = spec.get("listeners")
        if not isinstance(listeners, list) or not listeners:
            problems.append(Problem(gw.file, gw.ref, "spec.listeners", "needs at least one listener"))
            continue
        for i, lst in enumerate(listeners):
            fld = f"spec.listeners[{i}]"
            if not isinstance(lst, Mapping) or not lst.get("name"):
                problems.append(Problem(gw.file, gw.ref, f"{fld}.name", "is required"))
                continue
            proto = lst.get("protocol", "HTTP")
            if proto != "HTTP":
                problems.append(
                    Problem(
                        gw.file,
                        gw.ref,
                        f"{fld}.protocol",
                        f"{proto} is not supported (HTTP only)",
                        "UnsupportedProtocol",
                    )
                )
                continue
            port = lst.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                problems.append(Problem(gw.file, gw.ref, f"{fld}.port", f"must be 1-65535, got {port!r}"))
                continue
            host = lst.get("hostname")
            out.append(GatewayListener(gw, str(lst["name"]), port, str(host) if host else None))
    return out, problems


def _hostname_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return pattern == host


def intersect_hostnames(listener: str | None, route: list[str]) -> list[str] | None:
    """Effective hostnames of a route on a listener; [] means "any", None means "no overlap"."""
    if not route:
        return [listener] if listener else []
    if not listener:
        return list(route)
    out = []
    for h in route:
        if _hostname_matches(listener, h):
            out.append(h)
        elif _hostname_matches(h, listener) or h == listener:
            out.append(listener)
    return out or None


class RouteTranslator:
    """Turns one HTTPRoute into RouteIRs for each listener it attaches to."""

    def __init__(self, route: Resource, backend_clusters: Mapping[str, str]) -> None:
        self.route = route
        self.backend_clusters = backend_clusters  # "<ns>/<name>" of AIBackends -> cluster
        self.problems: list[Problem] = []

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.route.file, self.route.ref, fld, message, reason))

    def parents(self, listeners: list[GatewayListener]) -> list[GatewayListener]:
        attached: list[GatewayListener] = []
        refs = self.route.spec.get("parentRefs")
        if not isinstance(refs, list) or not refs:
            self.fail("spec.parentRefs", "needs at least one parentRef")
            return []
        for i, ref in enumerate(refs):
            if not isinstance(ref, Mapping) or not ref.get("name"):
                self.fail(f"spec.parentRefs[{i}].name", "is required")
                continue
            if ref.get("kind", "Gateway") != "Gateway" or ref.get("group", GATEWAY_API) != GATEWAY_API:
                self.fail(
                    f"spec.parentRefs[{i}].kind",
                    "only Gateway parents are supported",
                    "InvalidKind",
                )
                continue
            ns = ref.get("namespace") or self.route.namespace
            matched = [
                lst
                for lst in listeners
                if lst.gateway.name == ref["name"]
                and lst.gateway.namespace == ns
                and (not ref.get("sectionName") or ref["sectionName"] == lst.name)
                and (not ref.get("port") or ref["port"] == lst.port)
            ]
            if not matched:
                self.fail(
                    f"spec.parentRefs[{i}]",
                    f"no listener of Gateway {ns}/{ref['name']} matches",
                    "NoMatchingParent",
                )
            attached.extend(matched)
        return attached

    def rules(self) -> list[RouteIR]:
        rules = self.route.spec.get("rules")
        if rules is None:
            rules = [{}]
        if not isinstance(rules, list):
            self.fail("spec.rules", "must be a list")
            return []
        out: list[RouteIR] = []
        for ri, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                self.fail(f"spec.rules[{ri}]", "must be a mapping")
                continue
            out.extend(self._rule(ri, rule))
        return out

    def _rule(self, ri: int, rule: Mapping[str, Any]) -> list[RouteIR]:
        fld = f"spec.rules[{ri}]"
        backends, ai = self._backends(fld, rule.get("backendRefs") or [])
        rewrite, req_mod, resp_mod = self._filters(fld, rule.get("filters") or [])
        timeout = DEFAULT_REQUEST_TIMEOUT_S
        timeouts = rule.get("timeouts") or {}
        if isinstance(timeouts, Mapping) and timeouts.get("request") is not None:
            parsed = parse_duration(str(timeouts["request"]))
            if parsed is None:
                self.fail(f"{fld}.timeouts.request", f"invalid duration {timeouts['request']!r}")
            else:
                timeout = parsed
        matches = rule.get("matches") or [{}]
        out: list[RouteIR] = []
        for mi, raw in enumerate(matches):
            match = self._match(f"{fld}.matches[{mi}]", raw)
            if match is None:
                continue
            if rewrite and rewrite.prefix is not None and match.path_type != "PathPrefix":
                self.fail(f"{fld}.filters", "ReplacePrefixMatch needs a PathPrefix match")
                continue
            out.append(
                RouteIR(
                    name=f"httproute/{self.route.key}/rule/{ri}/match/{mi}",
                    route=self.route.key,
                    match=match,
                    backends=backends,
                    ai=ai,
                    timeout_s=timeout,
                    rewrite=rewrite,
                    request_headers=req_mod,
                    response_headers=resp_mod,
                    sort_key=_precedence(match, self.route, ri, mi),
                )
            )
        return out

    def _match(self, fld: str, raw: Any) -> MatchIR | None:
        if not isinstance(raw, Mapping):
            self.fail(fld, "must be a mapping")
            return None
        path = raw.get("path") or {}
        ptype = path.get("type", "PathPrefix")
        value = path.get("value", "/")
        if ptype not in ("Exact", "PathPrefix", "RegularExpression"):
            self.fail(f"{fld}.path.type", f"unsupported path match type {ptype!r}")
            return None
        if not isinstance(value, str) or (ptype != "RegularExpression" and not value.startswith("/")):
            self.fail(f"{fld}.path.value", "must be a string starting with /")
            return None
        if ptype == "RegularExpression" and not _valid_regex(value):
            self.fail(f"{fld}.path.value", f"invalid regular expression {value!r}")
            return None
        if ptype == "PathPrefix" and len(value) > 1:
            value = value.rstrip("/")
        headers = self._string_matches(f"{fld}.headers", raw.get("headers") or [])
        query = self._string_matches(f"{fld}.queryParams", raw.get("queryParams") or [])
        method = raw.get("method")
        if method is not None and method not in _METHODS:
            self.fail(f"{fld}.method", f"unknown method {method!r}")
            return None
        if headers is None or query is None:
            return None
        return MatchIR(ptype, value, headers, query, method)

    def _string_matches(self, fld: str, items: Any) -> tuple[StringMatchIR, ...] | None:
        out = []
        for i, item in enumerate(items):
            kind = item.get("type", "Exact") if isinstance(item, Mapping) else None
            if kind not in ("Exact", "RegularExpression") or not item.get("name"):
                self.fail(f"{fld}[{i}]", "needs a name and type Exact or RegularExpression")
                return None
            value = str(item.get("value", ""))
            if kind == "RegularExpression" and not _valid_regex(value):
                self.fail(f"{fld}[{i}].value", f"invalid regular expression {value!r}")
                return None
            out.append(StringMatchIR(kind, str(item["name"]), value))
        return tuple(out)

    def _backends(self, fld: str, refs: Any) -> tuple[tuple[WeightedBackendIR, ...], bool]:
        out: list[WeightedBackendIR] = []
        ai = False
        for i, ref in enumerate(refs):
            rf = f"{fld}.backendRefs[{i}]"
            if not isinstance(ref, Mapping) or not ref.get("name"):
                self.fail(f"{rf}.name", "is required")
                continue
            group, kind = ref.get("group", ""), ref.get("kind", "Service")
            weight = ref.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                self.fail(f"{rf}.weight", "must be a non-negative integer")
                continue
            if (group, kind) not in (
                ("llmgw.dev", "AIBackend"),
                ("agentgateway.dev", "AgentgatewayBackend"),
            ):
                self.fail(
                    f"{rf}.kind",
                    f"{group or 'core'}/{kind} backends are not supported in standalone mode (use an AIBackend)",
                    "InvalidKind",
                )
                continue
            ns = ref.get("namespace") or self.route.namespace
            if ns != self.route.namespace:
                self.fail(
                    f"{rf}.namespace",
                    "cross-namespace references need a ReferenceGrant",
                    "RefNotPermitted",
                )
                continue
            cluster = self.backend_clusters.get(f"{ns}/{ref['name']}")
            if cluster is None:
                self.fail(rf, f"{kind} {ns}/{ref['name']} not found or invalid", "BackendNotFound")
                continue
            ai = True
            if weight:
                out.append(WeightedBackendIR(cluster, weight))
        return tuple(out), ai

    def _filters(self, fld: str, filters: Any) -> tuple[RewriteIR | None, HeaderModIR | None, HeaderModIR | None]:
        rewrite = req = resp = None
        for i, flt in enumerate(filters):
            ff = f"{fld}.filters[{i}]"
            ftype = flt.get("type") if isinstance(flt, Mapping) else None
            if ftype == "URLRewrite":
                spec = flt.get("urlRewrite") or {}
                path = spec.get("path") or {}
                ptype = path.get("type")
                if path and ptype not in ("ReplacePrefixMatch", "ReplaceFullPath"):
                    self.fail(f"{ff}.urlRewrite.path.type", f"unknown type {ptype!r}")
                    continue
                rewrite = RewriteIR(
                    prefix=path.get("replacePrefixMatch") if ptype == "ReplacePrefixMatch" else None,
                    full_path=path.get("replaceFullPath") if ptype == "ReplaceFullPath" else None,
                    hostname=spec.get("hostname"),
                )
            elif ftype == "RequestHeaderModifier":
                req = _header_mod(flt.get("requestHeaderModifier") or {})
            elif ftype == "ResponseHeaderModifier":
                resp = _header_mod(flt.get("responseHeaderModifier") or {})
            else:
                self.fail(f"{ff}.type", f"filter {ftype!r} is not supported")
        return rewrite, req, resp


def _header_mod(spec: Mapping[str, Any]) -> HeaderModIR:
    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        return tuple((str(h["name"]), str(h.get("value", ""))) for h in spec.get(key) or [])

    return HeaderModIR(set=pairs("set"), add=pairs("add"), remove=tuple(spec.get("remove") or []))


def _valid_regex(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _precedence(match: MatchIR, route: Resource, rule: int, index: int) -> tuple[object, ...]:
    """Gateway API precedence: exact path, longest prefix, method, #headers, #query, age, name."""
    ptype = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}[match.path_type]
    return (
        ptype,
        -len(match.path),
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query),
        route.creation or "~",
        route.key,
        rule,
        index,
    )


def build_listener(
    *,
    gateway: str,
    port: int,
    attached: list[tuple[RouteIR, list[str]]],
    address: str,
    max_body_bytes: int,
) -> ListenerIR:
    """Group (route, effective hostnames) into virtual hosts; specific hosts first.

    A route with no hostnames ([] = any) also serves every specific host, after
    that host's own routes, as Gateway API hostname precedence requires.
    """
    by_domain: dict[str, list[RouteIR]] = {}
    catch_all: list[RouteIR] = []
    for route, hosts in attached:
        if not hosts:
            catch_all.append(route)
        for h in hosts:
            by_domain.setdefault(h, []).append(route)
    catch_all.sort(key=lambda r: r.sort_key)
    vhosts = [
        VirtualHostIR(
            name=domain,
            domains=(domain, f"{domain}:*"),
            routes=(*sorted(by_domain[domain], key=lambda r: r.sort_key), *catch_all),
        )
        for domain in sorted(by_domain)
    ]
    vhosts.append(VirtualHostIR(name="any", domains=("*",), routes=tuple(catch_all)))
    return ListenerIR(
        name=f"{gateway}/{port}",
        gateway=gateway,
        port=port,
        address=address,
        virtual_hosts=tuple(vhosts),
        max_body_bytes=max_body_bytes,
    )
