"""Render envoy/bootstrap.yaml for a standalone run (the template holds no Python logic)."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "envoy" / "bootstrap.yaml"


def render(*, node_id: str, admin_port: int, xds_socket: str, extproc_sockets: list[str], max_streams: int = 4) -> str:
    endpoints = [{"endpoint": {"address": {"pipe": {"path": s}}}} for s in extproc_sockets]
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        NODE_ID=node_id,
        ADMIN_PORT=admin_port,
        XDS_SOCKET=xds_socket,
        EXTPROC_ENDPOINTS=json.dumps(endpoints),
        EXTPROC_MAX_STREAMS=max_streams,
    )
