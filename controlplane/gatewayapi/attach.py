"""HTTPRoute parentRefs -> the listeners a route attaches to, and with which hostnames.

Per parentRef, as Gateway API reports it: the Gateway and listeners it names
(`NoMatchingParent`), those whose `allowedRoutes` admit the route's namespace
and kind (`NotAllowedByListeners`), and those with a hostname overlapping the
route's (`NoMatchingListenerHostname`). A parentRef is accepted when at least
one listener remains; the others are not an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controlplane.gatewayapi.hostnames import HostBinding, bind_hostnames, hostname_problem
from controlplane.gatewayapi.listeners import GATEWAY_API, GatewayListener
from controlplane.resources import Problem, Resource


def route_hostnames(route: Resource) -> tuple[list[str] | None, list[Problem]]:
    """The route's `spec.hostnames`; None when malformed (the route must not attach at all)."""
    raw = route.spec.get("hostnames")
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return None, [Problem(route.file, route.ref, "spec.hostnames", "must be a list")]
    problems = [
        Problem(route.file, route.ref, f"spec.hostnames[{i}]", why)
        for i, h in enumerate(raw)
        if (why := hostname_problem(h))
    ]
    return (None if problems else [str(h) for h in raw]), problems


def attach_route(
    route: Resource,
    *,
    listeners: Sequence[GatewayListener],
    namespaces: Mapping[str, Mapping[str, str]],
) -> tuple[list[tuple[GatewayListener, tuple[HostBinding, ...]]], list[Problem]]:
    """Listeners the route attaches to (each once) with its hostnames there, and the problems."""
    problems: list[Problem] = []

    def fail(fld: str, message: str, reason: str = "Invalid") -> None:
        problems.append(Problem(route.file, route.ref, fld, message, reason))

    hostnames, host_problems = route_hostnames(route)
    problems.extend(host_problems)
    refs = route.spec.get("parentRefs")
    if not isinstance(refs, list) or not refs:
        fail("spec.parentRefs", "needs at least one parentRef")
        return [], problems
    if hostnames is None:
        return [], problems
    out: dict[tuple[str, str], tuple[GatewayListener, tuple[HostBinding, ...]]] = {}
    for i, ref in enumerate(refs):
        fld = f"spec.parentRefs[{i}]"
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref.get("name"):
            fail(f"{fld}.name", "is required (a string)")
            continue
        if ref.get("kind", "Gateway") != "Gateway" or ref.get("group", GATEWAY_API) != GATEWAY_API:
            fail(f"{fld}.kind", "only Gateway parents are supported", "InvalidKind")
            continue
        ns = ref.get("namespace") or route.namespace
        section, port = ref.get("sectionName"), ref.get("port")
        of_gateway = [lst for lst in listeners if lst.gateway.name == ref["name"] and lst.gateway.namespace == ns]
        selected = [
            lst for lst in of_gateway if (not section or section == lst.name) and (port is None or port == lst.port)
        ]
        if not selected:
            why = "the Gateway is missing or has no valid listener" if not of_gateway else "by sectionName/port"
            fail(fld, f"no listener of Gateway {ns}/{ref['name']} matches ({why})", "NoMatchingParent")
            continue
        allowed = [
            lst
            for lst in selected
            if lst.allowed.admits(route_ns=route.namespace, gateway_ns=lst.gateway.namespace, namespaces=namespaces)
        ]
        if not allowed:
            fail(
                fld,
                f"no listener of Gateway {ns}/{ref['name']} allows HTTPRoutes from namespace {route.namespace}"
                " (see the listeners' allowedRoutes)",
                "NotAllowedByListeners",
            )
            continue
        bound = [(lst, hosts) for lst in allowed if (hosts := bind_hostnames(lst.hostname, hostnames)) is not None]
        if not bound:
            names = ", ".join(lst.name for lst in allowed)
            fail(
                "spec.hostnames",
                f"no hostname overlaps a listener of parentRefs[{i}] ({names})",
                "NoMatchingListenerHostname",
            )
            continue
        for lst, hosts in bound:
            out.setdefault((lst.gateway.key, lst.name), (lst, hosts))
    return list(out.values()), problems
