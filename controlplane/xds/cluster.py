"""Backend clusters: one endpoint per provider (priority = group), TLS per provider, outlier detection, pause checks."""

from __future__ import annotations

import ipaddress
from typing import Any

from controlplane.ir import TLSIR, BackendIR, ProviderIR
from controlplane.xds import names
from controlplane.xds.answered_marker import strip_answered_marker_filter
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from controlplane.xds.extproc_filters import attempt_stage_filter
from extproc import wire
from extproc.cooldown import ORACLE_PATH, PAUSABLE_KEY, pause_key

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def tls_socket(tls_ir: TLSIR, system_ca_file: str) -> dict[str, Any]:
    """Upstream TLS: the trust store or the given CA, SNI, and the SAN check unless skipped."""
    validation: dict[str, Any] = {}
    if not tls_ir.insecure_skip_verify:
        validation["trusted_ca"] = {"inline_string": tls_ir.ca_pem} if tls_ir.ca_pem else {"filename": system_ca_file}
        if tls_ir.sni and not tls_ir.skip_hostname_verify:
            validation["match_typed_subject_alt_names"] = [{"san_type": "DNS", "matcher": {"exact": tls_ir.sni}}]
    tls: dict[str, Any] = {
        "@type": _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"validation_context": validation},
    }
    if tls_ir.sni:
        tls["sni"] = tls_ir.sni
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def _eds_keeps_every_provider(providers: tuple[ProviderIR, ...]) -> bool:
    """Whether an EDS cluster would hold one host per provider.

    Envoy keys EDS hosts by address: of two endpoints with the same IP:port, in
    any priority, only the first is kept (`updateLocalityEndpoints` in
    source/extensions/clusters/eds/eds.cc), so the second provider (its
    metadata, its priority) silently disappears. A STRICT_DNS cluster resolves
    each endpoint as its own target with its own hosts, whatever the address,
    so providers that share a host:port (two models on api.openai.com, two
    deployments on one Azure resource, IP literals included) use that.
    """
    if not all(_is_ip(p.host) for p in providers):
        return False
    addresses = {(ipaddress.ip_address(p.host), p.port) for p in providers}
    return len(addresses) == len(providers)


def _lb_endpoint(p: ProviderIR, pause_oracle: tuple[str, int] | None = None) -> dict[str, Any]:
    ours: dict[str, Any] = {"provider": p.id}
    endpoint: dict[str, Any] = {
        "address": {"socket_address": {"address": p.host, "port_value": p.port}},
        "hostname": p.host,
    }
    if pause_oracle is not None:
        # The health check of this provider asks the pause oracle, naming the provider in Host.
        ours[PAUSABLE_KEY] = True
        endpoint["health_check_config"] = {
            "address": {"socket_address": {"address": pause_oracle[0], "port_value": pause_oracle[1]}},
            "hostname": pause_key(p.id),
        }
    return {
        "endpoint": endpoint,
        "metadata": {
            "filter_metadata": {
                names.METADATA_NAMESPACE: ours,
                "envoy.transport_socket_match": {"provider": p.id},
            }
        },
    }


def pause_health_check() -> dict[str, Any]:
    """Ends a Retry-After pause: every second, each provider's pause as the oracle reports it.

    The attempt stage starts a pause with `x-envoy-immediate-health-check-fail`; this check
    (against the gateway's oracle, never the provider) brings the host back once the oracle
    answers 200 again. An HTTP 503 from the oracle fails a host at once; an unreachable oracle
    is a network failure, which only counts after `unhealthy_threshold` in a row, so an oracle
    outage does not take healthy providers out. The criteria match none of the providers' TLS
    sockets: the check is plaintext.
    """
    return {
        "timeout": "1s",
        "interval": "1s",
        "no_traffic_interval": "1s",
        "unhealthy_interval": "1s",
        "interval_jitter": "0.1s",
        "unhealthy_threshold": 60,
        "healthy_threshold": 1,
        "reuse_connection": True,
        "http_health_check": {"path": ORACLE_PATH},
        "transport_socket_match_criteria": {"llmgw": "pause-oracle"},
    }


def cluster_resources(
    b: BackendIR,
    *,
    listener_limit: int,
    system_ca_file: str,
    direct: bool = False,
    pause_oracle: tuple[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The backend's cluster; `direct`: its twin for direct routes, without the attempt stage."""
    name = wire.direct_cluster(b.cluster) if direct else b.cluster
    eds = _eds_keeps_every_provider(b.providers)
    upstream_filters = [] if direct else [attempt_stage_filter(failover=b.fails_over)]
    oracle = pause_oracle if b.fails_over and not direct else None
    priorities = sorted({p.priority for p in b.providers})
    cla = {
        "cluster_name": name,
        "endpoints": [
            {"priority": i, "lb_endpoints": [_lb_endpoint(p, oracle) for p in b.providers if p.priority == prio]}
            for i, prio in enumerate(priorities)
        ],
    }
    cluster: dict[str, Any] = {
        "name": name,
        "connect_timeout": duration(b.connect_timeout_s) if b.connect_timeout_s else "5s",
        "lb_policy": "LEAST_REQUEST",
        "per_connection_buffer_limit_bytes": listener_limit,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    *upstream_filters,
                    strip_answered_marker_filter(),
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {"@type": _T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
                    },
                ],
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                    "max_retries": 1000,
                }
            ]
        },
    }
    if b.fails_over:
        # A provider that keeps failing (5xx, 429 seen as 503, connect errors) is ejected and
        # traffic moves to its group's siblings or the next group; it returns after the ejection.
        cluster["outlier_detection"] = {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 3,
            "consecutive_local_origin_failure": 3,
            "interval": "1s",
            "base_ejection_time": "15s",
            "max_ejection_percent": 100,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
        }
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
        if oracle is not None:
            cluster["health_checks"] = [pause_health_check()]
            # The pause oracle answers 200 for a provider outlier detection ejected: that must not
            # end the ejection (Envoy's default for a host passing its active health check).
            cluster["outlier_detection"]["successful_active_health_check_uneject_host"] = False
    matches = [
        {
            "name": p.id,
            "match": {"provider": p.id},
            "transport_socket": tls_socket(p.tls, system_ca_file),
        }
        for p in b.providers
        if p.tls is not None
    ]
    if matches:
        cluster["transport_socket_matches"] = matches
    if eds:
        cluster["type"] = "EDS"
        cluster["eds_cluster_config"] = {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
        return cluster, cla
    cluster["type"] = "STRICT_DNS"
    cluster["dns_lookup_family"] = "V4_PREFERRED"
    cluster["load_assignment"] = cla
    return cluster, None
