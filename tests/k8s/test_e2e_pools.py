"""InferencePools end to end in Kubernetes mode: `llmgw controller` on the in-process API server, the data
plane pod it provisioned run locally, model-server "pods" on loopback addresses and a protocol-faithful EPP.

Traffic follows the picker; a pod that stops being ready leaves the pool; the pool's status says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.epp import SELECTION_HEADER, FakeEpp
from tests.harness import free_port, wait_until
from tests.k8s import manifests as m
from tests.k8s.apiserver import ApiServer
from tests.k8s.localpod import LocalPod
from tests.k8s.test_e2e import ControllerProcess, apiserver  # noqa: F401 (fixture)
from tests.k8s.test_inference_pool_controller import pod, pool, pool_route

pytestmark = pytest.mark.integration

PODS = ("127.0.0.2", "127.0.0.3")


def test_pool_through_the_controller_and_a_real_data_plane(apiserver: ApiServer, tmp_path: Path) -> None:  # noqa: F811
    listen, port = free_port(), free_port()
    servers = {ip: FakeProviderThread(host=ip, port=port, name=f"pod-{ip}").start() for ip in PODS}
    epp = FakeEpp(endpoints=[f"{ip}:{port}" for ip in PODS]).start()
    qwen = pool("qwen")
    qwen["spec"]["targetPorts"] = [{"number": port}]
    qwen["spec"]["endpointPickerRef"] = {"name": "epp", "port": {"number": epp.port}}
    for obj in (
        m.gatewayclass(),
        m.gateway(port=listen),
        pool_route("chat", "qwen", "/v1"),
        qwen,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "epp", "namespace": "default"},
            "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": epp.port}]},
        },
        pod("qwen-0", PODS[0]),
        pod("qwen-1", PODS[1]),
    ):
        apiserver.apply(obj)
    controller = ControllerProcess(apiserver, tmp_path)
    data_plane: LocalPod | None = None
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{listen}/v1", api_key="unused", max_retries=0)

    def ask(selection: str | None = None) -> str:
        headers = {SELECTION_HEADER: selection} if selection else {}
        resp = client.chat.completions.create(
            model="qwen", messages=[{"role": "user", "content": "hi"}], extra_headers=headers
        )
        return str(resp.choices[0].message.content)

    def served() -> Counter[str]:
        return Counter({ip: len(s.provider.requests) for ip, s in servers.items()})

    try:
        wait_until(controller.ready, timeout=30, what="the controller to sync")
        wait_until(lambda: apiserver.get("Deployment", "llmgw"), timeout=20, what="the provisioned Deployment")
        deployment = apiserver.get("Deployment", "llmgw")
        assert deployment is not None
        secret = apiserver.get("Secret", "llmgw-llmgw-xds")  # the pod's xds client certificate (mutual TLS)
        assert secret is not None
        data_plane = LocalPod(deployment, workdir=tmp_path / "pod", secrets={"llmgw-llmgw-xds": secret}).start()
        wait_until(data_plane.ready, timeout=40, what="the data plane pod to be ready")
        wait_until(
            lambda: (
                m.condition(apiserver.get("InferencePool", "qwen"), "ResolvedRefs", "parents", 0)
                == ("True", "ResolvedRefs")
            ),
            what="the pool's status",
        )

        # The picker's choice is followed, for each pod.
        for ip in PODS:
            assert f"pod-{ip}" in ask(ip)
        assert served() == Counter({PODS[0]: 1, PODS[1]: 1})
        assert sorted(epp.calls[-1].subset or []) == sorted(f"{ip}:{port}" for ip in PODS)

        # A pod stops being ready: it leaves the pool (the subset the picker gets, and the cluster).
        apiserver.apply(pod("qwen-1", PODS[1], ready=False))
        wait_until(
            lambda: ask() and (epp.calls[-1].subset or []) == [f"{PODS[0]}:{port}"],
            timeout=20,
            what="the unready pod out of the pool",
        )
        before = served()
        for _ in range(4):
            assert f"pod-{PODS[0]}" in ask()
        assert served()[PODS[1]] == before[PODS[1]]
    except BaseException:
        print("--- controller log ---\n", controller.log()[-6000:])
        if data_plane is not None:
            for name in ("envoy", "extproc"):
                print(f"--- {name} log ---\n", data_plane.log(name)[-3000:])
        raise
    finally:
        if data_plane is not None:
            data_plane.stop()
        code = controller.stop()
        epp.stop()
        for s in servers.values():
            s.stop()
    assert code == 0, controller.log()[-3000:]
