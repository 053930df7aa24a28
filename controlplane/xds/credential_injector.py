"""Envoy's credential_injector as an upstream filter on plain backends, its credential from SDS.

A static backend's `policies.auth` (`key`, `secretRef`) is a header Envoy adds
itself: no extproc runs on plain routes. The header value travels to Envoy as an
SDS generic secret over the same ADS stream as the clusters, and only by name
in the filter config, so it never appears in a listener, route or cluster.
Envoy's admin `/config_dump` redacts generic secrets (their `secret` field is
marked sensitive); tests/test_plain_backends.py holds that.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import IR, PlainBackendIR
from controlplane.xds.common import TYPE_PREFIX as _T
from extproc.contract import AuthConfig

FILTER_NAME = "envoy.filters.http.credential_injector"
SECRET_PREFIX = "llmgw-credential/"


def injects(backend: PlainBackendIR) -> bool:
    """Whether Envoy adds a credential on this backend's requests (passthrough adds none)."""
    return backend.auth is not None and backend.auth.kind == "header"


def secret_name(backend: PlainBackendIR) -> str:
    return SECRET_PREFIX + backend.key


def credential_injector_filter(backend: PlainBackendIR) -> dict[str, Any]:
    assert backend.auth is not None
    return {
        "name": FILTER_NAME,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            # The backend's credential replaces whatever the client sent in that header.
            "overwrite": True,
            "credential": {
                "name": "envoy.http.injected_credentials.generic",
                "typed_config": {
                    "@type": _T + "envoy.extensions.http.injected_credentials.generic.v3.Generic",
                    "credential": {
                        "name": secret_name(backend),
                        "sds_config": {"ads": {}, "resource_api_version": "V3"},
                    },
                    "header": backend.auth.header,
                },
            },
        },
    }


def sds_secrets(ir: IR) -> list[dict[str, Any]]:
    """The SDS secrets of every plain backend that injects a credential: the full header value."""
    out = []
    for backend in ir.plain_backends:
        if not injects(backend):
            continue
        assert backend.auth is not None
        value = AuthConfig(header=backend.auth.header, prefix=backend.auth.prefix, value=backend.auth.value)
        out.append(
            {"name": secret_name(backend), "generic_secret": {"secret": {"inline_string": value.header_value()}}}
        )
    return out
