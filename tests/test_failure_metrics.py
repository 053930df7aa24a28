"""The failure vocabulary of the metrics (error.type) and the control plane's health collector."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.health_metrics import ConfigHealth, ControlPlaneCollector
from controlplane.xds.ads import AdsServer, Nack
from controlplane.xds.names import TYPE_CLUSTER, TYPE_LISTENER
from controlplane.xds.snapshot import Snapshot
from extproc.metrics import status_class
from extproc.router_stage import _bounded_code, envoy_error_type


@pytest.mark.parametrize(
    ("status", "details", "expected"),
    [
        (500, "via_upstream", "500"),
        (429, "via_upstream", "429"),
        (504, "response_timeout", "timeout"),
        (503, "upstream_reset_before_response_started{connection_termination}", "upstream_reset"),
        (503, "no_healthy_upstream", "no_healthy_upstream"),
        (404, "route_not_found", "route_not_found"),
        (500, "ext_proc_error_gRPC_error_14", "extproc_error"),
        (400, "llmgw_missing_model", "missing_model"),
        (502, "something_new", "_OTHER"),
        (0, "", "no_response"),
    ],
)
def test_envoy_error_type(status: int, details: str, expected: str) -> None:
    assert envoy_error_type(status, details) == expected


def test_codes_from_headers_are_bounded() -> None:
    assert _bounded_code("credential_error") == "credential_error"
    assert _bounded_code("Bearer sk-secret") == "_OTHER"  # never a header value as a label
    assert _bounded_code("x" * 41) == "_OTHER"


def test_status_class() -> None:
    assert [status_class(s) for s in (200, 404, 503, 0)] == ["2xx", "4xx", "5xx", "none"]


def test_control_plane_collector_reports_acks_nacks_and_rejections() -> None:
    ads = AdsServer()
    snap = Snapshot.build(serial=3, protos={})
    asyncio.run(ads.set_snapshot(snap))
    health = ConfigHealth()
    health.applied(serial=3)
    health.refused()
    ads.status.nacks.append(Nack("node", TYPE_LISTENER, "v1", "bad listener"))
    registry = CollectorRegistry()
    registry.register(ControlPlaneCollector(health=health, servers=lambda: [ads]))
    text = generate_latest(registry).decode()
    assert "llmgw_config_snapshot 3.0" in text
    assert "llmgw_config_rejected_total 1.0" in text
    assert 'llmgw_xds_nacks_total{type="Listener"} 1.0' in text
    assert "llmgw_xds_connected 0.0" in text
    assert TYPE_CLUSTER not in text  # short type names only
