"""GatewayClass and Gateway -> the listeners llmgw serves, with who may attach to them.

Every Gateway in standalone mode shares one listen address, so a port belongs
to the first Gateway that claims it; a later Gateway's listener on that port is
dropped with `PortUnavailable`. Within one Gateway, listeners on one port must
differ in hostname (`HostnameConflict`). `allowedRoutes` is parsed here and
applied when routes attach (`attach.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.gatewayapi.hostnames import hostname_problem
from controlplane.gatewayapi.listener_tls import CertRef, TlsProblem, parse_tls
from controlplane.resources import Problem, Resource

CONTROLLER_NAME = "llmgw.dev/gateway-controller"
GATEWAY_API = "gateway.networking.k8s.io"
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels AND matchExpressions); empty matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class AllowedRoutes:
    namespaces: str = "Same"  # Same | All | Selector
    selector: LabelSelector | None = None
    http_routes: bool = True  # False: `kinds` lists route kinds, none of them HTTPRoute

    def admits(self, *, route_ns: str, gateway_ns: str, namespaces: Mapping[str, Mapping[str, str]]) -> bool:
        if not self.http_routes:
            return False
        if self.namespaces == "All":
            return True
        if self.namespaces == "Selector":
            assert self.selector is not None
            return self.selector.matches(namespaces.get(route_ns, {}))
        return route_ns == gateway_ns


@dataclass(frozen=True)
class GatewayListener:
    gateway: Resource
    name: str
    port: int
    hostname: str | None
    allowed: AllowedRoutes = AllowedRoutes()
    protocol: str = "HTTP"  # HTTP | HTTPS
    certificates: tuple[CertRef, ...] = ()  # HTTPS: tls.certificateRefs, resolved in listener_tls.py
    tls_unsupported: tuple[str, ...] = ()  # tls fields read and not acted upon (reported)


def gateway_listeners(
    gateways: Iterable[Resource], classes: Mapping[str, Resource]
) -> tuple[list[GatewayListener], list[Problem]]:
    """Listeners of every Gateway whose class is ours (or whose class is not given in files)."""
    out: list[GatewayListener] = []
    problems: list[Problem] = []
    port_owner: dict[int, Resource] = {}
    for gw in gateways:
        spec = gw.spec
        cls = spec.get("gatewayClassName")
        if not isinstance(cls, str) or not cls:
            problems.append(Problem(gw.file, gw.ref, "spec.gatewayClassName", "is required (a string)"))
            continue
        gc = classes.get(cls)
        if gc is not None and gc.spec.get("controllerName") != CONTROLLER_NAME:
            continue  # someone else's Gateway
        listeners = spec.get("listeners")
        if not isinstance(listeners, list) or not listeners:
            problems.append(Problem(gw.file, gw.ref, "spec.listeners", "needs at least one listener"))
            continue
        names: set[str] = set()
        hosts: set[tuple[int, str | None]] = set()
        protocols: dict[int, str] = {}
        for i, raw in enumerate(listeners):
            lst, problem = _listener(gw, i, raw)
            if problem is None and lst is not None:
                problem = _conflict(gw, i, lst, names, hosts, port_owner, protocols)
            if problem is not None:
                problems.append(problem)
                continue
            assert lst is not None
            problems.extend(
                Problem(
                    gw.file, gw.ref, f"spec.listeners[{i}]{sub}", "is not supported by llmgw (ignored)", "Unsupported"
                )
                for sub in lst.tls_unsupported
            )
            names.add(lst.name)
            hosts.add((lst.port, lst.hostname))
            protocols.setdefault(lst.port, lst.protocol)
            port_owner.setdefault(lst.port, gw)
            out.append(lst)
    return out, problems


def _conflict(
    gw: Resource,
    i: int,
    lst: GatewayListener,
    names: set[str],
    hosts: set[tuple[int, str | None]],
    port_owner: Mapping[int, Resource],
    protocols: Mapping[int, str],
) -> Problem | None:
    fld = f"spec.listeners[{i}]"
    other = protocols.get(lst.port)
    if other is not None and other != lst.protocol:
        return Problem(
            gw.file,
            gw.ref,
            f"{fld}.protocol",
            f"another listener on port {lst.port} is {other}; one port serves one protocol, "
            "this listener is not served",
            "ProtocolConflict",
        )
    if lst.name in names:
        return Problem(gw.file, gw.ref, f"{fld}.name", f"duplicate listener name {lst.name!r}")
    owner = port_owner.get(lst.port)
    if owner is not None and owner is not gw:
        return Problem(
            gw.file,
            gw.ref,
            f"{fld}.port",
            f"port {lst.port} is already used by {owner.ref} in {owner.where}; this listener is not served",
            "PortUnavailable",
        )
    if (lst.port, lst.hostname) in hosts:
        what = f"hostname {lst.hostname}" if lst.hostname else "no hostname"
        return Problem(
            gw.file,
            gw.ref,
            f"{fld}.hostname",
            f"another listener on port {lst.port} has {what} too; this listener is not served",
            "HostnameConflict",
        )
    return None


def _listener(gw: Resource, i: int, raw: Any) -> tuple[GatewayListener | None, Problem | None]:
    fld = f"spec.listeners[{i}]"

    def bad(sub: str, message: str, reason: str = "Invalid") -> tuple[None, Problem]:
        return None, Problem(gw.file, gw.ref, f"{fld}{sub}", message, reason)

    if not isinstance(raw, Mapping):
        return bad("", "must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        return bad(".name", "is required (a string)")
    proto = raw.get("protocol", "HTTP")
    if proto not in ("HTTP", "HTTPS"):
        return bad(".protocol", f"{proto} is not supported by llmgw (HTTP and HTTPS)", "UnsupportedProtocol")
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return bad(".port", f"must be 1-65535, got {port!r}")
    host = raw.get("hostname")
    if host is not None and (why := hostname_problem(host)):
        return bad(".hostname", why)
    try:
        allowed = _allowed_routes(raw.get("allowedRoutes"))
    except _Bad as exc:
        return bad(".allowedRoutes" + exc.sub, exc.message)
    try:
        certs, unsupported = parse_tls(raw.get("tls"), protocol=proto, gateway_ns=gw.namespace, fld=fld)
    except TlsProblem as exc:
        return bad(exc.sub, exc.message, exc.reason)
    return GatewayListener(gw, name, port, host, allowed, proto, certs, tuple(unsupported)), None


class _Bad(Exception):
    """A malformed allowedRoutes: the sub-field and why."""

    def __init__(self, sub: str, message: str) -> None:
        super().__init__(message)
        self.sub = sub
        self.message = message


def _allowed_routes(raw: Any) -> AllowedRoutes:
    if raw is None:
        return AllowedRoutes()
    if not isinstance(raw, Mapping):
        raise _Bad("", "must be a mapping")
    http_routes = True
    kinds = raw.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not all(isinstance(k, Mapping) for k in kinds):
            raise _Bad(".kinds", "must be a list of {group, kind}")
        # Kinds other than HTTPRoute are not served here and ignored; listing only others excludes HTTPRoutes.
        http_routes = not kinds or any(
            k.get("kind") == "HTTPRoute" and k.get("group", GATEWAY_API) == GATEWAY_API for k in kinds
        )
    ns = raw.get("namespaces")
    if ns is None:
        return AllowedRoutes(http_routes=http_routes)
    if not isinstance(ns, Mapping):
        raise _Bad(".namespaces", "must be a mapping")
    source = ns.get("from", "Same")
    if source not in ("Same", "All", "Selector"):
        raise _Bad(".namespaces.from", f"must be Same, All or Selector, got {source!r}")
    selector = _selector(ns.get("selector")) if source == "Selector" else None
    return AllowedRoutes(namespaces=source, selector=selector, http_routes=http_routes)


def _selector(raw: Any) -> LabelSelector:
    at = ".namespaces.selector"
    if not isinstance(raw, Mapping):
        raise _Bad(at, "is required with from: Selector (matchLabels and/or matchExpressions)")
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise _Bad(f"{at}.matchLabels", "must map strings to strings")
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise _Bad(f"{at}.matchExpressions", "must be a list")
    parsed: list[tuple[str, str, tuple[str, ...]]] = []
    for j, expr in enumerate(exprs):
        where = f"{at}.matchExpressions[{j}]"
        if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str) or not expr.get("key"):
            raise _Bad(f"{where}.key", "is required (a string)")
        op, values = expr.get("operator"), expr.get("values") or []
        if op not in _OPERATORS:
            raise _Bad(f"{where}.operator", f"must be one of {', '.join(_OPERATORS)}, got {op!r}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _Bad(f"{where}.values", "must be a list of strings")
        if (op in ("In", "NotIn")) != bool(values):
            raise _Bad(f"{where}.values", "In and NotIn need values; Exists and DoesNotExist take none")
        parsed.append((expr["key"], op, tuple(values)))
    return LabelSelector(tuple(sorted(labels.items())), tuple(parsed))
