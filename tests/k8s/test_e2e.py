"""End to end without a cluster: `llmgw controller` on the in-process API server drives a real Envoy + extproc.

The controller runs as a user runs it (`llmgw controller --kubeconfig ...`,
leader election on). The data plane is the pod the controller provisioned,
run locally from its Deployment (`localpod.py`), reaching the controller's
ADS and config channel over TCP as it would in a cluster. Applying, changing
and deleting objects changes traffic (through the official openai SDK) and
status; rotating the Secret changes the key the provider receives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import free_port, wait_until
from tests.k8s import manifests as m
from tests.k8s.apiserver import ApiServer
from tests.k8s.localpod import LocalPod

pytestmark = pytest.mark.integration


class ControllerProcess:
    def __init__(self, apiserver: ApiServer, workdir: Path) -> None:
        self.workdir = workdir
        self.xds_port, self.health_port = free_port(), free_port()
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters: [{{name: in-process, cluster: {{server: "{apiserver.url}"}}}}]
users: [{{name: test, user: {{}}}}]
contexts: [{{name: test, context: {{cluster: in-process, user: test}}}}]
current-context: test
"""
        )
        argv = [
            sys.executable,
            "-m",
            "controlplane.cli",
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            "llmgw-system",
            "--identity",
            "e2e",
            "--xds-address",
            f"127.0.0.1:{self.xds_port}",
            "--xds-service",
            "127.0.0.1",
            "--health-port",
            str(self.health_port),
            "--dataplane-image",
            "llmgw:e2e",
        ]
        self.log_path = workdir / "controller.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 (closed with the process)
        env = {**os.environ, "LLMGW_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError("the controller did not stop on SIGTERM") from None


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer(bookmark_interval=1.0).start()
    try:
        yield server
    finally:
        server.stop()


def condition(apiserver: ApiServer, kind: str, name: str, ctype: str, *path: Any) -> Any:
    return m.condition(apiserver.get(kind, name), ctype, *path)


def chat(port: int, prefix: str = "/v1") -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}{prefix}", api_key="client-key", max_retries=0)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return str(resp.choices[0].message.content)


def status_code(port: int, path: str) -> int:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=10).status_code


def test_controller_drives_a_real_data_plane(apiserver: ApiServer, fake: FakeProviderThread, tmp_path: Path) -> None:
    listen = free_port()
    for obj in (
        m.gatewayclass(),
        m.gateway(port=listen),
        m.route(),
        m.aibackend(host="127.0.0.1", port=fake.port),
        m.secret(key="sk-one"),
    ):
        apiserver.apply(obj)
    controller = ControllerProcess(apiserver, tmp_path)
    pod: LocalPod | None = None
    try:
        wait_until(controller.ready, timeout=30, what="the controller to sync")
        wait_until(lambda: apiserver.get("Deployment", "llmgw"), timeout=20, what="the provisioned Deployment")
        deployment = apiserver.get("Deployment", "llmgw")
        assert deployment is not None
        lease = apiserver.get("Lease", "llmgw-controller", "llmgw-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == "e2e"

        secret = apiserver.get("Secret", "llmgw-llmgw-xds")  # the pod's xds client certificate (mutual TLS)
        assert secret is not None and secret["metadata"]["ownerReferences"][0]["kind"] == "Gateway"
        pod = LocalPod(deployment, workdir=tmp_path / "pod", secrets={"llmgw-llmgw-xds": secret}).start()
        wait_until(pod.ready, timeout=40, what="the data plane pod to be ready")
        # The kubelet and the cloud load balancer report back; the Gateway becomes Programmed.
        apiserver.set_status("Deployment", "llmgw", {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1})
        apiserver.set_status("Service", "llmgw", {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}})
        wait_until(
            lambda: condition(apiserver, "Gateway", "llmgw", "Programmed") == ("True", "Programmed"),
            what="Gateway Programmed",
        )

        # Traffic flows with the key from the Secret.
        assert chat(listen) == "Hello from fake: hi"
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-one"
        dump = pod.config_dump()
        assert "sk-one" not in dump and "llmgw" in dump
        # The controller's /metrics: the snapshot it serves, acknowledged by the pod's Envoy.
        metrics = httpx.get(f"http://127.0.0.1:{controller.health_port}/metrics", timeout=5).text
        assert 'llmgw_xds_acked{type="Listener"} 1.0' in metrics and "llmgw_xds_connected 1.0" in metrics
        assert 'llmgw_xds_nacks_total{type="Listener"} 0.0' in metrics

        # Rotating the Secret reaches new requests within seconds, without a restart.
        apiserver.apply(m.secret(key="sk-two"))

        def rotated() -> bool:
            chat(listen)
            return fake.requests[-1].headers["authorization"] == "Bearer sk-two"

        wait_until(rotated, timeout=15, what="the rotated key upstream")
        assert "sk-two" not in pod.config_dump()

        # A change: a second route to a second backend with its own Secret.
        apiserver.apply(m.aibackend("second", secret="second-key", host="127.0.0.1", port=fake.port))
        apiserver.apply(m.secret("second-key", key="sk-second"))
        apiserver.apply(m.route("second", backend="second", prefix="/v2"))
        assert status_code(listen, "/v2/chat/completions") in (404, 200)
        wait_until(lambda: status_code(listen, "/v2/chat/completions") == 200, timeout=15, what="the new route")
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-second"
        wait_until(
            lambda: condition(apiserver, "HTTPRoute", "second", "Accepted", "parents", 0) == ("True", "Accepted"),
            what="the new route's status",
        )
        gateway = apiserver.get("Gateway", "llmgw")
        assert gateway is not None and gateway["status"]["listeners"][0]["attachedRoutes"] == 2

        # A broken reference: status says why, and that rule answers 500 (Gateway API semantics).
        apiserver.apply(m.route("second", backend="missing", prefix="/v2"))
        wait_until(
            lambda: (
                condition(apiserver, "HTTPRoute", "second", "ResolvedRefs", "parents", 0)
                == ("False", "BackendNotFound")
            ),
            what="BackendNotFound",
        )
        wait_until(lambda: status_code(listen, "/v2/chat/completions") == 500, timeout=15, what="500 for the rule")
        assert chat(listen) == "Hello from fake: hi"  # the other route is unaffected

        # Deleting the route: its traffic stops.
        apiserver.remove("HTTPRoute", "second")
        wait_until(lambda: status_code(listen, "/v2/chat/completions") == 404, timeout=15, what="404 after delete")

        # Deleting the Gateway: its data plane objects are garbage-collected.
        apiserver.remove("Gateway", "llmgw")
        wait_until(lambda: apiserver.get("Deployment", "llmgw") is None, what="the Deployment to go")
    except BaseException:
        print("--- controller log ---\n", controller.log()[-6000:])
        if pod is not None:
            for name in ("envoy", "extproc"):
                print(f"--- {name} log ---\n", pod.log(name)[-3000:])
        raise
    finally:
        if pod is not None:
            pod.stop()
        code = controller.stop()
    assert code == 0, controller.log()[-3000:]
    released = apiserver.get("Lease", "llmgw-controller", "llmgw-system")
    assert released is not None and released["spec"]["holderIdentity"] == ""  # handed over on shutdown
