"""Render envoy/bootstrap.yaml (the template holds no Python logic).

The admin interface is never exposed beyond the gateway: a 0600 Unix socket
(`llmgw run`) or 127.0.0.1 inside a pod (Kubernetes).

Two transports to the control plane: a Unix socket (`llmgw run`, everything in
one host) or TCP to a host name (a provisioned Kubernetes pod reaching the
controller's Service; STRICT_DNS so the name is re-resolved when the
controller moves).
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from controlplane.limits import Limits

TEMPLATE = Path(__file__).resolve().parent.parent / "envoy" / "bootstrap.yaml"


ADMIN_SOCKET_MODE = 0o600


def render(
    *,
    node_id: str,
    admin_port: int | None = None,
    admin_socket: str | None = None,
    xds_socket: str | None = None,
    extproc_sockets: list[str],
    max_streams: int = 4,
    xds_address: tuple[str, int] | None = None,
    node_cluster: str = "llmgw",
    max_connections: int = Limits().max_connections,
) -> str:
    """The bootstrap YAML.

    Exactly one of `xds_socket` (Unix) or `xds_address` (TCP host, port) is
    given, and one of `admin_socket` (a Unix socket only this user can open) or
    `admin_port` (on 127.0.0.1).
    """
    if (xds_socket is None) == (xds_address is None):
        raise ValueError("give exactly one of xds_socket or xds_address")
    if (admin_socket is None) == (admin_port is None):
        raise ValueError("give exactly one of admin_socket or admin_port")
    admin: dict[str, object]
    if admin_socket is not None:
        admin = {"pipe": {"path": admin_socket, "mode": ADMIN_SOCKET_MODE}}
    else:
        admin = {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
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
        ADMIN_ADDRESS=json.dumps(admin),
        MAX_CONNECTIONS=int(max_connections),
        XDS_CLUSTER_TYPE=cluster_type,
        XDS_ADDRESS=json.dumps(address),
        EXTPROC_ENDPOINTS=json.dumps(endpoints),
        EXTPROC_MAX_STREAMS=max_streams,
    )
