"""The Kubernetes provider against a real API server: k3s in Docker via testcontainers.

Where a Docker engine is available this starts k3s, installs the Gateway API
CRDs and ours (so the API server itself checks our schemas and CEL rules),
runs the controller (in-process, same code as `llmgw controller`) against it,
applies the quickstart, and checks status and the provisioned Deployment. The
data plane image is not loaded into k3s, so pods do not start: Programmed stays
False, which is asserted too. Here (no Docker engine) every test skips with
that reason; `test_controller.py` and `test_e2e.py` run the same code against
the in-process API server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_API_CRDS = "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.1/standard-install.yaml"


@functools.cache
def docker_engine_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'testcontainers[k3s]')"
    try:
        docker.from_env(timeout=3).ping()
    except Exception:
        return "no Docker engine on this machine"
    return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(docker_engine_problem() is not None, reason=docker_engine_problem() or ""),
]


@pytest.fixture(scope="module")
def k3s_kube() -> Iterator[Any]:
    import httpx
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes import utils as k8s_utils
    from testcontainers.k3s import K3SContainer

    from controlplane.kubernetes.client import Kube

    with K3SContainer() as k3s:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config_from_dict(yaml.safe_load(k3s.config_yaml()), client_configuration=configuration)
        api = k8s.ApiClient(configuration)
        crds = [d for d in yaml.safe_load_all(httpx.get(GATEWAY_API_CRDS, follow_redirects=True).text) if d]
        crds += [yaml.safe_load(p.read_text().split("---\n", 1)[1]) for p in sorted((ROOT / "crds").glob("*.yaml"))]
        for doc in crds:
            k8s_utils.create_from_dict(api, doc)
        for doc in yaml.safe_load_all((ROOT / "deploy" / "gatewayclass.yaml").read_text()):
            k8s_utils.create_from_dict(api, doc)
        kube = Kube.for_configuration(configuration)
        yield kube
        kube.close()


def test_the_api_server_accepts_our_crds_and_rejects_a_broken_aibackend(k3s_kube: Any) -> None:
    from controlplane.kubernetes.client import KubeError
    from tests.k8s import manifests as m

    broken = m.aibackend("broken")
    broken["spec"]["ai"]["groups"] = [{"providers": [{"name": "a", "openai": {}}]}]  # provider and groups: CEL
    with pytest.raises(KubeError) as info:
        k3s_kube.create(broken)
    assert info.value.status == 422


def test_controller_on_k3s_writes_status_and_provisions(k3s_kube: Any) -> None:
    import asyncio
    import threading

    from controlplane.kubernetes.controller import Controller, Options
    from controlplane.kubernetes.provision import Settings
    from tests.harness import wait_until
    from tests.k8s import manifests as m

    for obj in (m.gateway(), m.route(), m.aibackend(), m.secret()):
        k3s_kube.create(obj)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    ctl = Controller(
        k3s_kube,
        Options(
            settings=Settings(image="llmgw:not-loaded", xds_host="llmgw-controller.llmgw-system.svc"),
            xds_listen="127.0.0.1:0",
            health_listen=None,
            leader_election=False,
        ),
    )
    asyncio.run_coroutine_threadsafe(ctl.start(), loop).result(30)
    try:

        def cond(kind: str, name: str, ctype: str, *path: Any) -> Any:
            return m.condition(
                k3s_kube.get(kind, name, namespace=None if kind == "GatewayClass" else "default"), ctype, *path
            )

        wait_until(lambda: cond("Gateway", "llmgw", "Accepted") == ("True", "Accepted"), timeout=60, what="Gateway")
        assert cond("GatewayClass", "llmgw", "Accepted") == ("True", "Accepted")
        wait_until(lambda: cond("HTTPRoute", "openai", "Accepted", "parents", 0) == ("True", "Accepted"), what="route")
        wait_until(lambda: cond("AIBackend", "openai", "Accepted") == ("True", "Accepted"), what="AIBackend")
        deployment = k3s_kube.get("Deployment", "llmgw", namespace="default")
        assert deployment is not None
        assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["envoy", "extproc"]
        gateway = k3s_kube.get("Gateway", "llmgw", namespace="default")
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == gateway["metadata"]["uid"]
        assert cond("Gateway", "llmgw", "Programmed")[0] == "False"  # the image is not in k3s
    finally:
        asyncio.run_coroutine_threadsafe(ctl.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
