"""Envoy's admin interface as the supervisor uses it: readiness, and a drain that waits.

One place for the admin calls of `llmgw run` (standalone) and of the
Kubernetes data-plane pod (where `python -m controlplane.envoy_admin drain`
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
import json
import logging
import sys
import urllib.request

log = logging.getLogger("llmgw.supervisor")
# Fits Kubernetes' default 30 s termination grace period, with room to stop the processes.
DRAIN_TIMEOUT_S = 25.0


class EnvoyAdmin:
    def __init__(self, port: int, *, host: str = "127.0.0.1") -> None:
        self.base = f"http://{host}:{port}"

    def get(self, path: str, *, timeout: float = 1.0) -> str:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
            return str(resp.read().decode())

    def post(self, path: str, *, timeout: float = 2.0) -> str:
        req = urllib.request.Request(self.base + path, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return str(resp.read().decode())

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
    drain.add_argument("--admin-port", type=int, default=15000)
    drain.add_argument("--timeout", type=float, default=DRAIN_TIMEOUT_S, help="seconds to wait for in-flight requests")
    drain.add_argument("--wait-only", action="store_true", help="only wait (another container started the drain)")
    args = parser.parse_args(argv)
    left = asyncio.run(EnvoyAdmin(args.admin_port).drain(timeout_s=args.timeout, start=not args.wait_only))
    if left:
        print(f"drain timeout ({args.timeout:g}s): {left} request(s) still in flight", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
