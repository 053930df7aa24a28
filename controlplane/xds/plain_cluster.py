"""Clusters of plain backends (static AgentgatewayBackends, Services): one host, no extproc.

Envoy alone proxies these: no attempt stage among the upstream filters, only
the credential injector when the backend's policy names a credential. A host
name resolves by DNS (STRICT_DNS); the endpoint carries it as its hostname so
that the route's auto host rewrite sends it as Host (agentgateway's `Auto`
host rewrite for hostname backends); Services and IPs keep the client's Host.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import PlainBackendIR
from controlplane.xds.cluster import tls_socket
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from controlplane.xds.credential_injector import credential_injector_filter, injects


def plain_cluster(b: PlainBackendIR, *, listener_limit: int, system_ca_file: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"address": {"socket_address": {"address": b.host, "port_value": b.port}}}
    if b.rewrite_host:
        endpoint["hostname"] = b.host
    filters = [credential_injector_filter(b)] if injects(b) else []
    cluster: dict[str, Any] = {
        "name": b.cluster,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": duration(b.connect_timeout_s) if b.connect_timeout_s else "5s",
        "per_connection_buffer_limit_bytes": listener_limit,
        "load_assignment": {"cluster_name": b.cluster, "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    *filters,
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {"@type": _T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
                    },
                ],
            }
        },
    }
    if b.tls is not None:
        # The same TLS as a provider's (trust store or CA refs, SNI, insecureSkipVerify).
        cluster["transport_socket"] = tls_socket(b.tls, system_ca_file)
    return cluster
