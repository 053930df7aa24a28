"""Envoy's ratelimit filter for `traffic.rateLimit.global` (the rate-limit service protocol).

What Envoy does natively, Envoy does: one `envoy.filters.http.ratelimit`
filter per distinct global limit of a listener (domain, service, failure mode,
descriptors), in the HCM chain before the router stage and disabled by
default; the routes whose effective policy carries that limit enable it
(`typed_per_filter_config`). The descriptors live in the filter
(`rate_limits`), built from the policy's entries: a string literal is a
`generic_key`, `request.headers["x"]` a `request_headers` action (a request
without the header sends no such descriptor).

Token descriptors (unit Tokens) are sent twice: with 1 hit when the request
starts, so a spent limit refuses it, and at stream end (`apply_on_stream_done`)
with the rest of its tokens, `%DYNAMIC_METADATA(llmgw:rls_token_hits)%`,
which the router stage writes as input + output - 1 when the response ends
(a cut stream: what was counted).

Refused requests get Envoy's 429, which local_reply.py turns into the
client's schema; the rate-limit service unreachable is a 503
`limits_unavailable` unless failureMode is FailOpen.
"""

from __future__ import annotations

import hashlib
from typing import Any

from controlplane.ir import GlobalRateLimitIR, ListenerIR, RouteIR
from controlplane.xds.common import TYPE_PREFIX as _T
from extproc import wire

FILTER_PREFIX = "llmgw.ratelimit."
TIMEOUT = "0.5s"
TOKEN_HITS = f"%DYNAMIC_METADATA({wire.METADATA_NAMESPACE}:{wire.RLS_TOKEN_HITS_KEY})%"


def _global(route: RouteIR) -> GlobalRateLimitIR | None:
    policy = route.policy
    rate = policy.rate_limit if policy is not None else None
    return rate.global_limit if rate is not None else None


def filter_name(limit: GlobalRateLimitIR) -> str:
    digest = hashlib.sha256(repr(limit).encode()).hexdigest()[:12]
    return FILTER_PREFIX + digest


def listener_filters(listener: ListenerIR) -> list[dict[str, Any]]:
    """The ratelimit filters of a listener, one per distinct global limit of its routes (disabled by default)."""
    seen: dict[str, GlobalRateLimitIR] = {}
    for vh in listener.virtual_hosts:
        for route in vh.routes:
            limit = _global(route)
            if limit is not None:
                seen.setdefault(filter_name(limit), limit)
    return [_filter(name, limit) for name, limit in sorted(seen.items())]


def route_filter_config(route: RouteIR) -> dict[str, Any]:
    """`typed_per_filter_config` entries that turn the route's global limit on."""
    limit = _global(route)
    if limit is None:
        return {}
    return {
        filter_name(limit): {
            "@type": _T + "envoy.config.route.v3.FilterConfig",
            "config": {"@type": _T + "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"},
        }
    }


def clusters(listeners: tuple[ListenerIR, ...]) -> list[dict[str, Any]]:
    """One HTTP/2 cluster per rate-limit service."""
    targets = {
        limit.cluster: limit
        for lst in listeners
        for vh in lst.virtual_hosts
        for route in vh.routes
        if (limit := _global(route)) is not None
    }
    return [
        {
            "name": name,
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "dns_lookup_family": "V4_PREFERRED",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {"socket_address": {"address": limit.host, "port_value": limit.port}}
                                }
                            }
                        ]
                    }
                ],
            },
        }
        for name, limit in sorted(targets.items())
    ]


def _filter(name: str, limit: GlobalRateLimitIR) -> dict[str, Any]:
    rate_limits: list[dict[str, Any]] = []
    for d in limit.descriptors:
        actions = [_action(e.key, e.header, e.value) for e in d.entries]
        rate_limits.append({"actions": actions})
        if d.tokens:
            rate_limits.append(
                {"actions": actions, "apply_on_stream_done": True, "hits_addend": {"format": TOKEN_HITS}}
            )
    return {
        "name": name,
        "disabled": True,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": limit.domain,
            "timeout": TIMEOUT,
            "failure_mode_deny": not limit.fail_open,
            "status_on_error": {"code": "ServiceUnavailable"},
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": limit.cluster}},
                "transport_api_version": "V3",
            },
            "rate_limits": rate_limits,
        },
    }


def _action(key: str, header: str | None, value: str | None) -> dict[str, Any]:
    if header is not None:
        return {"request_headers": {"header_name": header, "descriptor_key": key}}
    return {"generic_key": {"descriptor_key": key, "descriptor_value": value or ""}}
