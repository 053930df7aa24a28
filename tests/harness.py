"""Starting the real gateway (`llmgw run`: control plane + extproc workers + Envoy) for tests.

The gateway runs as a subprocess exactly as a user starts it, on free ports,
with its own run directory; `stop()` checks it exits cleanly and leaves no
process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    return free_ports(1)[0]


_HANDED_OUT: set[int] = set()  # ports this test process was given: never handed out twice


def free_ports(count: int) -> list[int]:
    """`count` free ports, distinct from each other and from every port handed out before.

    The kernel can give the same port to two bind(0) calls in a row (seen: 3 in 20,000 pairs),
    and Envoy binds with SO_REUSEPORT: a gateway whose listener port equals its readiness port
    answered some requests from the readiness listener (an empty 404).
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)  # held until the end, so the kernel moves on to another port
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                ports.append(port)
        _HANDED_OUT.update(ports)
        return ports
    finally:
        for s in held:
            s.close()


def gateway_yaml(*, port: int, name: str = "gw") -> str:
    """The GatewayClass `llmgw` and a Gateway `name` (namespace default) with one HTTP listener on `port`."""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
"""


def route_rule(prefix: str, backend: str, *, rewrite: bool = False, kind: str = "AIBackend") -> str:
    """One HTTPRoute rule: paths under `prefix` go to `backend`; `rewrite` replaces the prefix with `/`."""
    group = "agentgateway.dev" if kind == "AgentgatewayBackend" else "llmgw.dev"
    lines = [f"    - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]"]
    if rewrite:
        lines.append(
            "      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]"
        )
    lines.append(f"      backendRefs: [{{group: {group}, kind: {kind}, name: {backend}}}]")
    return "\n".join(lines) + "\n"


def http_route_yaml(*rules: str, name: str = "r", gateway: str = "gw") -> str:
    """An HTTPRoute on Gateway `gateway` with `rules` (from `rule`, or written out for richer matches)."""
    head = f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {gateway}}}]
  rules:
"""
    return head + "".join(rules)


def ai_backend_yaml(name: str, provider: str, *, port: int, key: str, namespace: str = "default") -> str:
    """An AIBackend `name` whose provider block is `provider` (e.g. `openai: {}`) at 127.0.0.1:`port`, keyed `key`."""
    return f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ai: {{provider: {{{provider}, host: 127.0.0.1, port: {port}}}}}
  policies: {{auth: {{key: {key}}}}}
"""


def gateway_manifests(
    *,
    port: int,
    upstream_port: int,
    key: str = "sk-test-key",
    model: str | None = None,
    name: str = "fake",
    path_prefix: str = "/v1",
) -> str:
    """A Gateway + HTTPRoute (`/v1` and `/openai` with prefix rewrite) + AIBackend + Secret."""
    model_line = f"model: {model}" if model else ""
    route = http_route_yaml(route_rule(path_prefix, name), route_rule("/openai", name, rewrite=True), name="openai")
    return (
        gateway_yaml(port=port)
        + route
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      openai: {{{model_line}}}
      host: 127.0.0.1
      port: {upstream_port}
  policies:
    auth:
      secretRef: {{name: {name}-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-key, namespace: default}}
stringData:
  Authorization: {key}
"""
    )


class GatewayProcess:
    def __init__(
        self,
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        drain_timeout: float = 3.0,
        args: list[str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llmgw-t-", dir="/tmp"))  # short: Unix socket paths
        self.manifest_dir = self.dir / "manifests"
        self.manifest_dir.mkdir()
        self.run_dir = self.dir / "run"
        self.port, self.metrics_port, self.ready_port = free_ports(3)
        self.workers = workers
        self.drain_timeout = drain_timeout  # short: a test's leftover streams should not hold its teardown
        self.args = list(args or [])  # more `llmgw run` options (e.g. limits)
        self.env = {**os.environ, **(env or {})}
        self.log_path = self.dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_socket(self) -> Path:
        """Envoy's admin interface: a Unix socket in the run directory (never a TCP port)."""
        return self.run_dir / "admin.sock"

    def admin(self, path: str, *, method: str = "GET") -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.admin_socket)), timeout=5) as client:
            return client.request(method, "http://localhost" + path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, name: str, text: str) -> None:
        """Write a manifest atomically (as an editor's save-and-rename would)."""
        tmp = self.manifest_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(self.manifest_dir / name)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "controlplane.cli",
            "run",
            "-f",
            str(self.manifest_dir),
            "--workers",
            str(self.workers),
            "--listen-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--ready-port",
            str(self.ready_port),
            "--run-dir",
            str(self.run_dir),
            "--envoy-concurrency",
            "2",
            "--drain-timeout",
            str(self.drain_timeout),
            *self.args,
        ]

    def start(self, *, timeout: float = 30.0) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.ready_port}/healthz/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def config_dump(self) -> str:
        return self.admin("/config_dump?include_eds").text

    def child_pids(self) -> list[int]:
        """Processes started for this gateway (their command line names our run dir)."""
        marker = str(self.run_dir).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != (self.proc.pid if self.proc else -1):
                pids.append(int(entry.name))
        return pids

    def stop(self, *, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        leftovers = self.child_pids()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None
        if leftovers:
            raise AssertionError(f"gateway left processes behind: {leftovers}")
        return code

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(predicate, what: str = "condition", *, timeout: float = 15.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned), or fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
