"""InferencePools in Envoy: the endpoint picker as an ext_proc filter, and clusters that obey its pick.

The Gateway API Inference Extension's endpoint picker protocol (proposal 004,
protocol v1.0.0, GIE v1.6.0), done by Envoy the way the reference gateways do:

- One HCM ext_proc filter (`llmgw.endpoint_picker`) after the router stage. It
  is off on every route except those to a pool with a picker; there, the route
  (or, for a split across pools, each weighted cluster) overrides its gRPC
  service with that pool's EPP cluster and its failure mode (FailOpen:
  `failure_mode_allow`). The request headers and body stream to the EPP
  (FULL_DUPLEX_STREAMED, as the reference EPP expects); it answers with
  `x-gateway-destination-endpoint` as a header and in `envoy.lb` metadata.
- The pool's cluster holds its ready pods (pod IP x targetPort) and balances
  with the override-host policy: the first listed endpoint, the next one on a
  retry (connect failure, reset), and least-request over all ready pods when
  the picker named none (FailOpen with the EPP down, or a pool without one).
- The subset hint (every endpoint of the pool) is cluster metadata under
  `envoy.lb.subset_hint`, forwarded to the EPP.
- The endpoint that served is reported back: the route stamps the upstream
  address on the response (`x-gateway-destination-endpoint-served`); a
  header-to-metadata filter between the picker and the router moves it into
  `envoy.lb` dynamic metadata (removing the header) before the picker sees the
  response, and the picker's filter forwards that namespace.
- A client's own `x-gateway-destination-endpoint` is removed before routing
  (listener.early_header_mutation), so no client picks a host.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import PoolIR
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.extproc_filters import EXTPROC_MESSAGE_TIMEOUT
from extproc import wire

PICKER_FILTER = "llmgw.endpoint_picker"
SERVED_FILTER = "llmgw.endpoint_served"
# Envoy retries on the next endpoint the picker listed (override-host walks the list per attempt).
PICKER_RETRIES = 3
PICKER_RETRY_ON = "connect-failure,reset,refused-stream"
PICKER_HEALTH_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"

_EXT_PROC = _T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
_PER_ROUTE = _T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
_LEAST_REQUEST = _T + "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"


def _grpc_service(pool: PoolIR) -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": pool.picker_cluster, "authority": pool.picker_cluster.replace("/", ".")}}


def picker_filter(pools: tuple[PoolIR, ...]) -> list[dict[str, Any]]:
    """The HCM filters for pools (none when no route sends to a pool with a picker)."""
    with_picker = [p for p in pools if p.picker is not None]
    if not with_picker:
        return []
    return [
        {
            "name": PICKER_FILTER,
            "typed_config": {
                "@type": _EXT_PROC,
                # Replaced per route (picker_route_config); this one is never reached.
                "grpc_service": _grpc_service(with_picker[0]),
                "failure_mode_allow": False,
                "status_on_error": {"code": "ServiceUnavailable"},
                "message_timeout": EXTPROC_MESSAGE_TIMEOUT,
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "request_body_mode": "FULL_DUPLEX_STREAMED",
                    "request_trailer_mode": "SEND",
                    "response_header_mode": "SEND",
                    # The reference EPP tracks each request to its end (and reads usage) on the
                    # response body, which it streams back.
                    "response_body_mode": "FULL_DUPLEX_STREAMED",
                    "response_trailer_mode": "SEND",
                },
                "metadata_options": {
                    "forwarding_namespaces": {"untyped": [wire.LB_METADATA_NAMESPACE]},
                    "receiving_namespaces": {"untyped": [wire.LB_METADATA_NAMESPACE]},
                    "cluster_metadata_forwarding_namespaces": {"untyped": [wire.SUBSET_HINT_NAMESPACE]},
                },
                # The picker chooses the endpoint, never the route: its header must not re-route.
                "route_cache_action": "RETAIN",
            },
        },
        {
            "name": SERVED_FILTER,
            "typed_config": {
                "@type": _T + "envoy.extensions.filters.http.header_to_metadata.v3.Config",
                "response_rules": [
                    {
                        "header": wire.DESTINATION_ENDPOINT_SERVED,
                        "on_header_present": {
                            "metadata_namespace": wire.LB_METADATA_NAMESPACE,
                            "key": wire.DESTINATION_ENDPOINT_SERVED,
                            "type": "STRING",
                        },
                        "remove": True,
                    }
                ],
            },
        },
    ]


def picker_route_config(pool: PoolIR | None) -> dict[str, Any]:
    """The picker filter's per-route (or per weighted cluster) config: its pool's EPP, or off."""
    if pool is None or pool.picker is None:
        return {"@type": _PER_ROUTE, "disabled": True}
    return {
        "@type": _PER_ROUTE,
        "overrides": {"grpc_service": _grpc_service(pool), "failure_mode_allow": pool.picker.fail_open},
    }


def served_header() -> dict[str, Any]:
    """Response header of pool routes: the upstream address that answered (to envoy.lb metadata, then gone)."""
    return {
        "header": {"key": wire.DESTINATION_ENDPOINT_SERVED, "value": "%UPSTREAM_REMOTE_ADDRESS%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }


def pool_retry_policy() -> dict[str, Any]:
    """On a failed connection, the next endpoint the picker listed (override-host walks the list)."""
    return {
        "retry_on": PICKER_RETRY_ON,
        "num_retries": PICKER_RETRIES,
        "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
        # Past the picker's list, the fallback balancer must not pick a pod that just failed.
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }
        ],
        "host_selection_retry_max_attempts": 10,
    }


def pool_clusters(pool: PoolIR, *, listener_limit: int) -> list[dict[str, Any]]:
    """The model servers' cluster (override-host LB) and, with a picker, the EPP's gRPC cluster."""
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
        for ip, port in pool.endpoints
    ]
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if pool.h2c else {"http_protocol_options": {}}
    cluster: dict[str, Any] = {
        "name": pool.cluster,
        "type": "STATIC",
        "connect_timeout": "5s",
        "per_connection_buffer_limit_bytes": listener_limit,
        "load_assignment": {"cluster_name": pool.cluster, "endpoints": [{"lb_endpoints": endpoints}]},
        "load_balancing_policy": {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.override_host",
                        "typed_config": {
                            "@type": _T + "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
                            "override_host_sources": [
                                {"header": wire.DESTINATION_ENDPOINT_HEADER},
                                {
                                    "metadata": {
                                        "key": wire.LB_METADATA_NAMESPACE,
                                        "path": [{"key": wire.DESTINATION_ENDPOINT_HEADER}],
                                    }
                                },
                            ],
                            "fallback_policy": {
                                "policies": [
                                    {
                                        "typed_extension_config": {
                                            "name": "envoy.load_balancing_policies.least_request",
                                            "typed_config": {"@type": _LEAST_REQUEST},
                                        }
                                    }
                                ]
                            },
                        },
                    }
                }
            ]
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": protocol,
            }
        },
        "metadata": {
            "filter_metadata": {
                wire.SUBSET_HINT_NAMESPACE: {
                    wire.DESTINATION_ENDPOINT_SUBSET: [_endpoint(ip, port) for ip, port in pool.endpoints]
                }
            }
        },
        "circuit_breakers": {
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]
        },
    }
    out = [cluster]
    if pool.picker is not None:
        out.append(
            {
                "name": pool.picker_cluster,
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_PREFERRED",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": pool.picker_cluster,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": pool.picker.host,
                                                "port_value": pool.picker.port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
            }
        )
        if pool.picker.fail_open:
            # The picker's gRPC health (GIE 004 requires it). A picker found down fails its
            # ext_proc stream before any byte is sent, which FailOpen can skip (a stream that
            # fails after the body was streamed to it cannot be skipped in Envoy 1.40); no
            # panic routing to a picker known to be down. FailClose needs none: a failed
            # stream is its 503 either way, and a missed check must not fail good requests.
            out[-1]["health_checks"] = [picker_health_check()]
            out[-1]["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
    return out


def picker_health_check() -> dict[str, Any]:
    """gRPC health of the ext_proc service, every second; down after 1 failure, up after 1 success."""
    return {
        "timeout": "1s",
        "interval": "1s",
        "no_traffic_interval": "1s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "grpc_health_check": {"service_name": PICKER_HEALTH_SERVICE},
    }


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
