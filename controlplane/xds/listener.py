"""Gateway listeners: the HTTP connection manager, its filters, client limits and error replies."""

from __future__ import annotations

from typing import Any

from controlplane.ir import ListenerIR, PoolIR
from controlplane.limits import H2_CONNECTION_WINDOW, H2_MAX_CONCURRENT_STREAMS, H2_STREAM_WINDOW, Limits
from controlplane.xds import ratelimit
from controlplane.xds.access_log import access_log
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from controlplane.xds.extproc_filters import router_stage_filter
from controlplane.xds.inference_pool import picker_filter
from controlplane.xds.jwt_authn import jwt_authn_filter
from controlplane.xds.listener_tls import tls_filter_chains, tls_listener_filters
from controlplane.xds.local_reply import local_reply_config
from controlplane.xds.tracing import TracingSettings, hcm_tracing
from extproc import wire


def early_header_mutation() -> list[dict[str, Any]]:
    """Headers only the gateway may set, removed from every request before route matching.

    `x-gateway-model-name` selects backends; a client's copy would otherwise pick
    a backend (and its key) on any request the extproc does not rewrite, such as
    a GET or a non-JSON body. `x-gateway-destination-endpoint` picks an
    InferencePool's endpoint; a client's copy would pick any pod (and, with a
    FailOpen picker down, any host). Early header mutation runs before routing
    and before any filter, on every route.
    """
    return [
        {
            "name": "llmgw.strip_gateway_headers",
            "typed_config": {
                "@type": _T + "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                "mutations": [{"remove": h} for h in wire.GATEWAY_ONLY_HEADERS],
            },
        }
    ]


def listener_resource(
    listener: ListenerIR, limits: Limits, *, tracing: TracingSettings | None = None, pools: tuple[PoolIR, ...] = ()
) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": listener.name.replace("/", "_"),
        "codec_type": "AUTO",
        "rds": {
            "route_config_name": listener.name,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        },
        "http_filters": [
            *([jwt] if (jwt := jwt_authn_filter(listener)) else []),
            *ratelimit.listener_filters(listener),  # traffic.rateLimit.global (Envoy's own filter)
            router_stage_filter(listener.gateway, jwt=jwt is not None),
            *picker_filter(pools),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
        "access_log": access_log(listener.gateway),
        "local_reply_config": local_reply_config(),
        "use_remote_address": True,
        "early_header_mutation_extensions": early_header_mutation(),
        # Slow and greedy clients (controlplane/limits.py).
        "request_headers_timeout": duration(limits.request_headers_timeout_s),
        "request_timeout": duration(limits.request_timeout_s),
        "stream_idle_timeout": duration(limits.stream_idle_timeout_s),
        "common_http_protocol_options": {"idle_timeout": duration(limits.idle_timeout_s)},
        "http2_protocol_options": {
            "max_concurrent_streams": H2_MAX_CONCURRENT_STREAMS,
            "initial_stream_window_size": H2_STREAM_WINDOW,
            "initial_connection_window_size": H2_CONNECTION_WINDOW,
        },
    }
    if tracing is not None:
        hcm["tracing"] = hcm_tracing(tracing, gateway=listener.gateway)
    out: dict[str, Any] = {
        "name": listener.name,
        "address": {"socket_address": {"address": listener.address, "port_value": listener.port}},
        "per_connection_buffer_limit_bytes": limits.connection_buffer_bytes,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    if listener.tls:  # HTTPS: SNI filter chains, certificates from SDS (listener_tls.py)
        out["listener_filters"] = tls_listener_filters()
        out["filter_chains"] = tls_filter_chains(listener, hcm)
    return out
