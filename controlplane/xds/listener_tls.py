"""Downstream TLS of HTTPS listeners: SNI filter chains whose certificates come from SDS.

Each Gateway listener on an HTTPS port becomes one filter chain matching its
hostname (`server_names`; a listener without hostname matches any name), all
chains sharing the port's HTTP connection manager. The chain names its
certificates only by SDS secret name (`llmgw-tls/<ns>/<name>`); the PEM chain
and key travel as SDS `tls_certificate` secrets over the ADS stream, through
the same path as the plain backends' credentials (credential_injector.py,
`translate.to_protos`). Envoy's config dump redacts a secret's private key, and
a Secret edited in place changes only that SDS resource: Envoy serves the new
certificate on new connections without draining the listener or restarting.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import IR, ListenerIR, TlsChainIR
from controlplane.xds.common import TYPE_PREFIX as _T

ALPN = ["h2", "http/1.1"]


def tls_filter_chains(listener: ListenerIR, hcm: dict[str, Any]) -> list[dict[str, Any]]:
    return [_chain(chain, hcm) for chain in listener.tls]


def tls_listener_filters() -> list[dict[str, Any]]:
    """The TLS inspector reads the ClientHello's SNI so filter chains can match on it."""
    return [
        {
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": _T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
        }
    ]


def _chain(chain: TlsChainIR, hcm: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "alpn_protocols": ALPN,
                    "tls_certificate_sds_secret_configs": [
                        {"name": cert.secret, "sds_config": {"ads": {}, "resource_api_version": "V3"}}
                        for cert in chain.certificates
                    ],
                },
            },
        },
    }
    if chain.server_names:
        out["filter_chain_match"] = {"server_names": list(chain.server_names)}
    return out


def tls_secrets(ir: IR) -> list[dict[str, Any]]:
    """The SDS `tls_certificate` secrets of every HTTPS listener, once per Secret."""
    out: dict[str, dict[str, Any]] = {}
    for listener in ir.listeners:
        for chain in listener.tls:
            for cert in chain.certificates:
                out[cert.secret] = {
                    "name": cert.secret,
                    "tls_certificate": {
                        "certificate_chain": {"inline_string": cert.certificate_chain},
                        "private_key": {"inline_string": cert.private_key},
                    },
                }
    return [out[name] for name in sorted(out)]
