"""Envoy's admin interface as the supervisor uses it: readiness, and a drain that waits.

One place for the admin calls of `llmgw run` (standalone: a Unix socket in
the run directory that only this user can open, mode 0600, never a TCP
port) and of the Kubernetes data-plane pod (127.0.0.1 inside the pod) (where `python -m controlplane.envoy_admin drain`
is the containers' preStop hook: Kubernetes sends SIGTERM only after it
returns, and Envoy exits at once on SIGTERM, so the drain must happen here).

Draining: Envoy's `/drain_listeners?graceful` makes every connection close
after its current request (HTTP/1 `Connection: close`, HTTP/2 GOAWAY) and
closes the listeners after Envoy's `--drain-time-s`; we then wait until no
downstream request is active on the Gateway listeners, or the timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import socket
import sys

log = logging.getLogger("llmgw.supervisor")
# Fits Kubernetes' default 30 s termination grace period, with room to stop the processes.
DRAIN_TIMEOUT_S = 25.0


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


class EnvoyAdmin:
    """Envoy's admin on a Unix socket (`socket_path`) or on 127.0.0.1:`port`."""

    def __init__(self, *, socket_path: str | None = None, port: int | None = None) -> None:
        if (socket_path is None) == (port is None):
            raise ValueError("give exactly one of socket_path or port")
        self.socket_path, self.port = socket_path, port

    def request(self, method: str, path: str, *, timeout: float = 2.0) -> tuple[int, str]:
        """One admin request; OSError if Envoy is not there or the answer is broken."""
        conn: http.client.HTTPConnection
        if self.socket_path is not None:
            conn = _UnixConnection(self.socket_path, timeout)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        except http.client.HTTPException as exc:
            raise OSError(f"admin {method} {path}: {exc}") from exc
        finally:
            conn.close()

    def get(self, path: str, *, timeout: float = 1.0) -> str:
        return self.request("GET", path, timeout=timeout)[1]

    def post(self, path: str, *, timeout: float = 2.0) -> str:
        return self.request("POST", path, timeout=timeout)[1]

    def state(self) -> str:
        """`LIVE` when Envoy serves (its `/ready`)."""
        return self.get("/ready").strip()

    def active_requests(self) -> int:
        """Downstream requests in flight on the Gateway listeners (the admin's own excluded)."""
        body = self.get("/stats?filter=downstream_rq_active$&format=json")
        stats = json.loads(body).get("stats", [])
        return sum(
            int(s.get("value", 0))
            for s in stats
            if isinstance(s, dict) and not str(s.get("name", "")).startswith("http.admin.")
        )

    async def drain(self, *, timeout_s: float, start: bool = True) -> int:
        """Drain (if `start`) and wait for in-flight requests; returns how many were still active (0: drained).

        An Envoy that is gone or never answers counts as drained: nothing is left to wait for.
        """
        if start:
            try:
                await asyncio.to_thread(self.post, "/drain_listeners?graceful")
            except OSError:
                return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        active = 0
        while True:
            try:
                active = await asyncio.to_thread(self.active_requests)
            except (OSError, ValueError):
                return 0
            if active == 0 or loop.time() >= deadline:
                return active
            await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.envoy_admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    drain = sub.add_parser("drain", help="drain Envoy's listeners and wait for in-flight requests")
    where = drain.add_mutually_exclusive_group()
    where.add_argument("--admin-port", type=int, default=15000, help="admin on 127.0.0.1:PORT (Kubernetes pods)")
    where.add_argument("--admin-socket", default=None, help="admin on this Unix socket (llmgw run's run dir)")
    drain.add_argument("--timeout", type=float, default=DRAIN_TIMEOUT_S, help="seconds to wait for in-flight requests")
    drain.add_argument("--wait-only", action="store_true", help="only wait (another container started the drain)")
    args = parser.parse_args(argv)
    admin = EnvoyAdmin(socket_path=args.admin_socket) if args.admin_socket else EnvoyAdmin(port=args.admin_port)
    left = asyncio.run(admin.drain(timeout_s=args.timeout, start=not args.wait_only))
    if left:
        print(f"drain timeout ({args.timeout:g}s): {left} request(s) still in flight", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
