"""Talking to Envoy's admin interface over its Unix socket (`llmgw run` puts it there, mode 0600)."""

from __future__ import annotations

import http.client
import socket


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(socket_path: str, method: str, path: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """One admin request (e.g. GET /ready, POST /drain_listeners); OSError if Envoy is not there."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except http.client.HTTPException as exc:
        raise OSError(f"admin {method} {path}: {exc}") from exc
    finally:
        conn.close()
