"""Envoy's jwt_authn filter for `traffic.jwtAuthentication` (one filter per listener that needs it).

Envoy validates the token (signature from an inline or remote JWKS, issuer,
audiences, expiry) before the router stage's ext_proc filter; the payload of
a valid token lands in dynamic metadata (`envoy.filters.http.jwt_authn`,
keyed by provider name), which that ext_proc filter forwards, so the router
stage maps its claims to the caller's identity. The token is removed from
the request after a successful check (`forward: false`).

Each route with a JWT policy names its requirement (per-route config):
Strict requires one of the policy's providers, Optional also allows no token,
Permissive never rejects. Every other route falls to the filter's rule, which
validates a token of any provider when present and rejects nothing: model
routing may move the request to a JWT route after the body, and the router
stage then knows from the payloads whether the caller satisfies that route's
policy (the authentication guard in route.py answers 401 if not).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from controlplane.gatewayapi.policy_jwt import policy_id, provider_names
from controlplane.ir import JwtAuthIR, ListenerIR, RouteIR
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration

FILTER_NAME = "envoy.filters.http.jwt_authn"
JWKS_FETCH_TIMEOUT_S = 5.0
_JWKS_CLUSTER = "jwks/"


def listener_policies(listener: ListenerIR) -> dict[str, JwtAuthIR]:
    """The JWT policies on a listener's routes, by policy id (one without providers, which could not be
    read, refuses every request in the router stage and needs nothing from Envoy)."""
    return {
        policy_id(r.policy.jwt): r.policy.jwt
        for vh in listener.virtual_hosts
        for r in vh.routes
        if r.policy is not None and r.policy.jwt is not None and r.policy.jwt.providers
    }


def jwt_authn_filter(listener: ListenerIR) -> dict[str, Any] | None:
    """The HCM filter, or None when no route of the listener has a JWT policy."""
    policies = listener_policies(listener)
    if not policies:
        return None
    providers: dict[str, Any] = {}
    requirements: dict[str, Any] = {}
    for pid, auth in sorted(policies.items()):
        names = provider_names(auth)
        for name, p in zip(names, auth.providers, strict=True):
            provider: dict[str, Any] = {
                "issuer": p.issuer,
                "from_headers": [{"name": auth.header, "value_prefix": auth.prefix}],
                "payload_in_metadata": name,
                "forward": False,
            }
            if p.audiences:
                provider["audiences"] = list(p.audiences)
            if p.jwks_inline is not None:
                provider["local_jwks"] = {"inline_string": p.jwks_inline}
            else:
                assert p.jwks_uri is not None
                provider["remote_jwks"] = {
                    "http_uri": {
                        "uri": p.jwks_uri,
                        "cluster": jwks_cluster_name(p.jwks_uri),
                        "timeout": duration(JWKS_FETCH_TIMEOUT_S),
                    },
                    "cache_duration": duration(p.cache_duration_s),
                    "async_fetch": {},
                }
            providers[name] = provider
        any_of: list[dict[str, Any]] = [{"provider_name": n} for n in names]
        if auth.mode == "Optional":
            any_of.append({"allow_missing": {}})
        elif auth.mode == "Permissive":
            any_of.append({"allow_missing_or_failed": {}})
        requirements[pid] = any_of[0] if len(any_of) == 1 else {"requires_any": {"requirements": any_of}}
    validate_if_present: list[dict[str, Any]] = [{"provider_name": n} for n in sorted(providers)]
    validate_if_present.append({"allow_missing_or_failed": {}})
    return {
        "name": FILTER_NAME,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "requirement_map": requirements,
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": validate_if_present}}}],
        },
    }


def per_route(r: RouteIR) -> dict[str, Any] | None:
    """The route's requirement (its policy's id), or None: the filter's validate-if-present rule."""
    if r.policy is None or r.policy.jwt is None or not r.policy.jwt.providers:
        return None
    return {
        "@type": _T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
        "requirement_name": policy_id(r.policy.jwt),
    }


def jwks_cluster_name(uri: str) -> str:
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{_JWKS_CLUSTER}{parts.scheme}/{parts.hostname}/{port}"


def jwks_clusters(listeners: tuple[ListenerIR, ...], *, system_ca_file: str) -> list[dict[str, Any]]:
    """One cluster per remote JWKS host (TLS with the system trust store for https)."""
    out: dict[str, dict[str, Any]] = {}
    for listener in listeners:
        for auth in listener_policies(listener).values():
            for p in auth.providers:
                if p.jwks_uri is None:
                    continue
                name = jwks_cluster_name(p.jwks_uri)
                parts = urlsplit(p.jwks_uri)
                host = parts.hostname or ""
                port = parts.port or (443 if parts.scheme == "https" else 80)
                cluster: dict[str, Any] = {
                    "name": name,
                    "type": "LOGICAL_DNS",
                    "connect_timeout": duration(JWKS_FETCH_TIMEOUT_S),
                    "dns_lookup_family": "V4_PREFERRED",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                                ]
                            }
                        ],
                    },
                }
                if parts.scheme == "https":
                    cluster["transport_socket"] = {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                            "sni": host,
                            "common_tls_context": {
                                "validation_context": {
                                    "trusted_ca": {"filename": system_ca_file},
                                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                                }
                            },
                        },
                    }
                out[name] = cluster
    return [out[k] for k in sorted(out)]
