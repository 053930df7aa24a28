"""Render envoy/bootstrap.yaml (the template holds no Python logic).

Two transports to the control plane: a Unix socket (`llmgw run`, everything in
one host) or TCP to a host name (a provisioned Kubernetes pod reaching the
controller's Service; STRICT_DNS so the name is re-resolved when the
controller moves).
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "envoy" / "bootstrap.yaml"


def render(
    *,
    node_id: str,
    admin_port: int,
    xds_socket: str | None = None,
    extproc_sockets: list[str],
    max_streams: int = 4,
    xds_address: tuple[str, int] | None = None,
    node_cluster: str = "llmgw",
) -> str:
    """The bootstrap YAML; exactly one of `xds_socket` (Unix) or `xds_address` (TCP host, port) is given."""
    if (xds_socket is None) == (xds_address is None):
        raise ValueError("give exactly one of xds_socket or xds_address")
    if xds_address is not None:
        host, port = xds_address
        address = {"socket_address": {"address": host, "port_value": port}}
        cluster_type = "STRICT_DNS"
    else:
        address = {"pipe": {"path": xds_socket}}
        cluster_type = "STATIC"
    endpoints = [{"endpoint": {"address": {"pipe": {"path": s}}}} for s in extproc_sockets]
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        NODE_ID=json.dumps(node_id),
        NODE_CLUSTER=json.dumps(node_cluster),
        ADMIN_PORT=admin_port,
        XDS_CLUSTER_TYPE=cluster_type,
        XDS_ADDRESS=json.dumps(address),
        EXTPROC_ENDPOINTS=json.dumps(endpoints),
        EXTPROC_MAX_STREAMS=max_streams,
    )
