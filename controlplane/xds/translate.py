"""IR -> Envoy resources as plain dicts in Envoy's JSON shape, then protos.

Dicts keep the translation readable and make the golden files diffable; the
`to_protos` step parses them into upb messages, which also catches a field
name Envoy does not know. No secret is ever written here: credentials travel
to the extproc over its own channel.

Plain backends' credentials and HTTPS listeners' certificates are the one
exception: Envoy uses them itself (credential_injector.py, listener_tls.py),
from SDS secrets that `to_protos` adds from the IR when asked; they are never
part of `EnvoyResources` (the golden files), and Envoy's config dump redacts them.

This module assembles one snapshot; each Envoy concern has its own module:
listener.py (HCM, client limits), local_reply.py (error replies in the
client's schema), access_log.py, extproc_filters.py (router and attempt
stages), jwt_authn.py (JWT validation), route.py (matches, rewrites, retry
policy, authentication guards), cluster.py (endpoints per provider, TLS,
outlier detection, pause checks), plain_cluster.py (static backends and
Services), credential_injector.py and answered_marker.py (upstream filters),
inference_pool.py (InferencePool clusters and the endpoint picker filter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Registering every type that may appear inside an Any.
import envoy.config.cluster.v3.cluster_pb2 as cluster_pb2
import envoy.config.endpoint.v3.endpoint_pb2 as endpoint_pb2
import envoy.config.listener.v3.listener_pb2 as listener_pb2
import envoy.config.route.v3.route_pb2 as route_pb2
import envoy.config.trace.v3.opentelemetry_pb2
import envoy.extensions.access_loggers.filters.cel.v3.cel_pb2
import envoy.extensions.access_loggers.stream.v3.stream_pb2
import envoy.extensions.filters.http.credential_injector.v3.credential_injector_pb2
import envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2
import envoy.extensions.filters.http.header_mutation.v3.header_mutation_pb2
import envoy.extensions.filters.http.header_to_metadata.v3.header_to_metadata_pb2
import envoy.extensions.filters.http.jwt_authn.v3.config_pb2
import envoy.extensions.filters.http.ratelimit.v3.rate_limit_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.http.upstream_codec.v3.upstream_codec_pb2
import envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.http.early_header_mutation.header_mutation.v3.header_mutation_pb2
import envoy.extensions.http.injected_credentials.generic.v3.generic_pb2
import envoy.extensions.load_balancing_policies.least_request.v3.least_request_pb2
import envoy.extensions.load_balancing_policies.override_host.v3.override_host_pb2
import envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2
import envoy.extensions.retry.priority.previous_priorities.v3.previous_priorities_config_pb2
import envoy.extensions.transport_sockets.tls.v3.secret_pb2 as secret_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.ir import IR
from controlplane.limits import Limits
from controlplane.xds import names, ratelimit
from controlplane.xds.cluster import SYSTEM_CA_FILE, cluster_resources
from controlplane.xds.credential_injector import sds_secrets
from controlplane.xds.inference_pool import pool_clusters
from controlplane.xds.jwt_authn import jwks_clusters
from controlplane.xds.listener import listener_resource
from controlplane.xds.listener_tls import tls_secrets
from controlplane.xds.plain_cluster import plain_cluster
from controlplane.xds.route import route_config_resource
from controlplane.xds.tracing import TracingSettings, collector_cluster


@dataclass(frozen=True)
class EnvoyResources:
    """One consistent set of resources (a snapshot's content) as JSON-shaped dicts."""

    listeners: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        return {
            names.TYPE_LISTENER: self.listeners,
            names.TYPE_ROUTE: self.routes,
            names.TYPE_CLUSTER: self.clusters,
            names.TYPE_ENDPOINT: self.endpoints,
        }


_PROTO_OF = {
    names.TYPE_LISTENER: listener_pb2.Listener,
    names.TYPE_ROUTE: route_pb2.RouteConfiguration,
    names.TYPE_CLUSTER: cluster_pb2.Cluster,
    names.TYPE_ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}


def to_protos(resources: EnvoyResources, *, ir: IR | None = None) -> dict[str, list[Message]]:
    """Parse every dict into its proto; raises json_format.ParseError on a bad field.

    `ir`: also the SDS secrets of its plain backends' credentials and of its HTTPS listeners'
    certificates (what Envoy is served; the golden files and `EnvoyResources` never hold them).
    """
    out: dict[str, list[Message]] = {}
    for type_url, items in resources.by_type().items():
        cls = _PROTO_OF[type_url]
        out[type_url] = [json_format.ParseDict(item, cls()) for item in items]
    if ir is not None:
        secrets = sds_secrets(ir) + tls_secrets(ir)
        out[names.TYPE_SECRET] = [json_format.ParseDict(s, secret_pb2.Secret()) for s in secrets]
    return out


def translate(
    ir: IR,
    *,
    system_ca_file: str = SYSTEM_CA_FILE,
    pause_oracle: tuple[str, int] | None = None,
    limits: Limits | None = None,
    tracing: TracingSettings | None = None,
) -> EnvoyResources:
    """`pause_oracle`: the gateway's pause oracle (host, port), which ends Retry-After pauses
    (extproc/cooldown.py); without it a failover cluster has no health check and a 429 counts
    towards outlier detection whatever its Retry-After."""
    res = EnvoyResources()
    providers = {b.cluster: len(b.providers) for b in ir.backends}
    pools = {p.cluster: p for p in ir.pools}
    host_rewrite = {b.cluster for b in ir.plain_backends if b.rewrite_host}
    for listener in ir.listeners:
        res.listeners.append(listener_resource(listener, limits or Limits(), tracing=tracing, pools=ir.pools))
        res.routes.append(route_config_resource(listener, providers, pools=pools, host_rewrite=host_rewrite))
    direct = {
        r.backends[0].cluster
        for lst in ir.listeners
        for vh in lst.virtual_hosts
        for r in vh.routes
        if r.direct_provider
    }
    for backend in ir.backends:
        for twin in (False, True) if backend.cluster in direct else (False,):
            cluster, cla = cluster_resources(
                backend,
                listener_limit=_max_body(ir),
                system_ca_file=system_ca_file,
                direct=twin,
                pause_oracle=pause_oracle,
            )
            res.clusters.append(cluster)
            if cla is not None:
                res.endpoints.append(cla)
    res.clusters.extend(ratelimit.clusters(ir.listeners))  # rate-limit services (traffic.rateLimit.global)
    for pool in ir.pools:
        res.clusters.extend(pool_clusters(pool, listener_limit=_max_body(ir)))
    res.clusters.extend(jwks_clusters(ir.listeners, system_ca_file=system_ca_file))
    if tracing is not None:
        res.clusters.append(collector_cluster(tracing))
    for plain in ir.plain_backends:
        res.clusters.append(plain_cluster(plain, listener_limit=_max_body(ir), system_ca_file=system_ca_file))
    return res


def _max_body(ir: IR) -> int:
    return max((lst.max_body_bytes for lst in ir.listeners), default=10 * 1024 * 1024)
