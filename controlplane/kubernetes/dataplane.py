"""The extproc sidecar of a provisioned data plane pod: `python -m controlplane.kubernetes.dataplane`.

What `llmgw run` does for its workers, minus the control plane and Envoy
(Envoy is the pod's other container): start `--workers` extproc processes on
Unix sockets in the shared emptyDir, each subscribing to the controller's
config channel as "extproc-N@<gateway>" so it receives this Gateway's
providers and credentials only; restart them when they die; serve their
merged metrics on :15020/metrics and the pod's readiness on
:15021/healthz/ready (200 once every worker listens on its socket, which it
does only once it has its config, and Envoy, over its admin port on
localhost, is LIVE with config). SIGTERM stops the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from prometheus_client import multiprocess

from controlplane.children import Child, accepting
from controlplane.envoy_admin import DRAIN_TIMEOUT_S, EnvoyAdmin
from controlplane.observability import start_http

log = logging.getLogger("llmgw.dataplane")


def worker_argv(*, socket_dir: str, index: int, config: str, gateway: str, tls_dir: str | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "extproc",
        "--listen",
        f"unix:{socket_dir}/extproc-{index}.sock",
        "--config",
        config,
        "--name",
        f"extproc-{index}@{gateway}",
        *(["--config-tls-dir", tls_dir] if tls_dir else []),
    ]


async def serve(args: argparse.Namespace) -> int:
    socket_dir = Path(args.socket_dir)
    metrics_dir = socket_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    # The workers share the providers' Retry-After pauses through the state dir (extproc/cooldown.py).
    state_dir = socket_dir / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LLMGW_STATE_DIR": str(state_dir)}
    # Limits: one SQLite file for the pod's workers, unless GatewayParameters names a shared Redis.
    env.setdefault("LLMGW_STORE", f"sqlite:{socket_dir / 'limits.db'}")

    def died(pid: int) -> None:
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid, str(metrics_dir))

    children = [
        Child(
            f"extproc-{i}",
            worker_argv(
                socket_dir=str(socket_dir),
                index=i,
                config=args.config,
                gateway=args.gateway,
                tls_dir=args.config_tls_dir,
            ),
            env=env,
            on_exit=died,
        )
        for i in range(max(1, args.workers))
    ]
    for child in children:
        await child.start()

    async def is_ready() -> tuple[bool, str]:
        missing = [
            c.name
            for i, c in enumerate(children)
            if not await asyncio.to_thread(accepting, socket_dir / f"extproc-{i}.sock")
        ]
        if missing:
            return False, f"extproc not listening yet: {', '.join(missing)}"
        try:
            state = await asyncio.to_thread(EnvoyAdmin(port=args.admin_port).state)
        except OSError as exc:
            return False, f"envoy not ready: {exc}"
        return state == "LIVE", f"envoy {state}"

    runner = await start_http(
        host=args.listen_address,
        metrics_port=args.metrics_port,
        ready_port=args.ready_port,
        multiproc_dir=str(metrics_dir),
        is_ready=is_ready,
        state_dir=str(state_dir),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("data plane sidecar for Gateway %s: %d extproc worker(s)", args.gateway, len(children))
    await stop.wait()
    # The Envoy container's preStop hook is draining it (provision.py); requests still in flight
    # need the workers, so they stop only once Envoy has no active request (or the timeout).
    await EnvoyAdmin(port=args.admin_port).drain(timeout_s=args.drain_timeout, start=False)
    for child in reversed(children):
        await child.stop()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.kubernetes.dataplane", description=__doc__)
    parser.add_argument("--gateway", required=True, help='the Gateway this pod serves, "<namespace>/<name>"')
    parser.add_argument("--config", required=True, help="the controller's config channel, HOST:PORT")
    parser.add_argument(
        "--config-tls-dir",
        default=None,
        help="ca.crt, tls.crt, tls.key for mutual TLS to the controller (kubernetes/xds_tls.py); none: plaintext",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--socket-dir", default="/var/run/llmgw")
    parser.add_argument("--admin-port", type=int, default=15000, help="Envoy's admin port on 127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=15020)
    parser.add_argument("--ready-port", type=int, default=15021)
    parser.add_argument("--listen-address", default="0.0.0.0", help="address of the metrics and readiness ports")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT_S,
        help="seconds to serve Envoy's in-flight requests",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LLMGW_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
