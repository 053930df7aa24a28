"""Hostnames: listener/route intersection, and the Envoy virtual hosts of one port.

Gateway API serves a request from the most specific listener whose hostname
matches its Host (exact, then the longest wildcard, then no hostname); only
routes attached to that listener apply, and among them the rules of routes
whose own hostname matches more specifically come first (exact, then wildcard,
then routes without hostnames), then the usual match precedence.

Envoy also picks one virtual host per request by the most specific domain
(exact, then the longest `*.` suffix, then `*`). So one virtual host for every
distinct hostname on the port (listeners' and routes'), holding exactly the
routes Gateway API applies to the hosts that land on it, reproduces those
semantics. Pure functions; no Envoy types.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controlplane.ir import ListenerIR, RouteIR, TlsChainIR, VirtualHostIR

_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def hostname_problem(value: object, *, wildcard: bool = True) -> str | None:
    """Why `value` is not a Gateway API hostname (None: it is one)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > 253 or not _HOSTNAME.match(value):
        return f"{value!r} is not a valid lowercase DNS name (optionally starting with *.)"
    if value.startswith("*.") and not wildcard:
        return f"{value!r}: a wildcard is not allowed here"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return f"{value!r} is an IP address; hostnames must be DNS names"


def covers(outer: str | None, inner: str | None) -> bool:
    """Every host that pattern `inner` matches is matched by pattern `outer` (None: any host)."""
    if outer is None:
        return True
    if inner is None:
        return False
    if outer == inner:
        return True
    # "*.example.com" matches "a.example.com", "a.b.example.com", "*.b.example.com"; not the apex.
    return outer.startswith("*.") and inner.endswith(outer[1:])


def specificity(host: str | None) -> tuple[int, int]:
    """Sort key, most specific first: exact hostnames, then longer wildcards, then none."""
    if host is None:
        return (2, 0)
    return (1 if host.startswith("*.") else 0, -len(host))


@dataclass(frozen=True)
class HostBinding:
    """One hostname a route serves on one listener."""

    host: str | None  # the effective hostname; None: every host the listener serves
    route_host: str | None  # the route's own hostname behind it; None: the route names none


def bind_hostnames(listener: str | None, route: Sequence[str]) -> tuple[HostBinding, ...] | None:
    """A route's hostnames on a listener; None when none overlaps (the route does not attach)."""
    if not route:
        return (HostBinding(listener, None),)
    out: list[HostBinding] = []
    for h in route:
        if covers(listener, h):
            binding = HostBinding(h, h)
        elif covers(h, listener):
            binding = HostBinding(listener, h)
        else:
            continue
        if binding not in out:
            out.append(binding)
    return tuple(out) or None


def intersect_hostnames(listener: str | None, route: list[str]) -> list[str] | None:
    """Effective hostnames of a route on a listener; [] means "any", None means "no overlap"."""
    bindings = bind_hostnames(listener, route)
    if bindings is None:
        return None
    return list(dict.fromkeys(b.host for b in bindings if b.host is not None))


@dataclass(frozen=True)
class Attached:
    """One route rule (RouteIR) attached to the listener with hostname `listener` on a port."""

    listener: str | None
    route: RouteIR
    hosts: tuple[HostBinding, ...]


def build_listener(
    *,
    gateway: str,
    port: int,
    listener_hosts: Iterable[str | None],
    attached: Sequence[Attached],
    address: str,
    max_body_bytes: int,
    tls: tuple[TlsChainIR, ...] = (),
) -> ListenerIR:
    """One virtual host per distinct hostname on the port, plus "any" for the rest.

    `listener_hosts` are the hostnames of every listener on the port (unique:
    conflicting listeners were dropped before), including those without routes:
    a host such a listener owns must not fall through to another listener's routes.
    """
    owners = sorted(set(listener_hosts), key=specificity)
    domains = {lst for lst in owners if lst is not None}
    domains.update(b.host for a in attached for b in a.hosts if b.host is not None)
    vhosts = [
        VirtualHostIR(name=d, domains=(d,), routes=_routes_for(d, owners, attached))
        for d in sorted(domains, key=lambda d: (d.startswith("*."), d))
    ]
    vhosts.append(VirtualHostIR(name="any", domains=("*",), routes=_routes_for(None, owners, attached)))
    return ListenerIR(
        name=f"{gateway}/{port}",
        gateway=gateway,
        port=port,
        address=address,
        virtual_hosts=tuple(vhosts),
        max_body_bytes=max_body_bytes,
        tls=tls,
    )


def _routes_for(domain: str | None, owners: list[str | None], attached: Sequence[Attached]) -> tuple[RouteIR, ...]:
    """The routes for the hosts Envoy sends to `domain`, in Gateway API order, each once."""
    serving = [lst for lst in owners if covers(lst, domain)]
    if not serving:
        return ()  # no listener serves these hosts
    owner = serving[0]  # the most specific one
    ranked: list[tuple[tuple[int, int], tuple[object, ...], str, RouteIR]] = []
    for a in attached:
        if a.listener != owner:
            continue
        ranks = [specificity(b.route_host) for b in a.hosts if covers(b.host, domain)]
        if ranks:
            ranked.append((min(ranks), a.route.sort_key, a.route.name, a.route))
    ranked.sort(key=lambda item: item[:3])
    out: dict[str, RouteIR] = {}
    for *_, route in ranked:
        out.setdefault(route.name, route)
    return tuple(out.values())
