"""The Helm chart (charts/llmgw): renders, validates against the Kubernetes schemas, agrees with deploy/.

No Helm binary is packaged for PyPI or Debian, so the templates are rendered by
tests/helm_render.py (the subset of Go templates the chart uses; anything else
fails loudly) and `helm lint` / `helm template` run only where `helm` exists.
Every rendered object is validated with kubernetes-validate against the
Kubernetes OpenAPI schemas (strict: unknown fields fail); the CRDs the chart
installs are the repository's crds/ (a symlink, so they cannot drift).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controlplane.cli import build_parser
from controlplane.kubernetes import provision
from controlplane.resources import Resource
from tests.helm_render import render_chart
from tests.test_crds import schema_errors

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llmgw"
K8S_VERSION = "1.33"
VALUES_CASES = {
    "defaults": {},
    "everything": {
        "image": {"repository": "registry.example/llmgw", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull"}],
        "replicas": 3,
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "logLevel": "DEBUG",
        "otlp": {"endpoint": "otel-collector.telemetry:4317", "samplingPercent": 10},
        "gatewayClass": {"create": False},
        "networkPolicy": {"enabled": False},
        "dataplaneImage": "registry.example/llmgw:1.2.3",
    },
    "redis": {"redis": {"secretName": "llmgw-redis", "secretKey": "url", "failureMode": "FailOpen"}},
}


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_chart(CHART, values=values)) if d]


def find(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("case", VALUES_CASES)
def test_rendered_objects_are_valid_kubernetes(case: str) -> None:
    objs = objects(VALUES_CASES[case])
    assert objs
    for obj in objs:
        if obj["apiVersion"].startswith("gateway.networking.k8s.io/"):
            assert obj["spec"]["controllerName"] == "llmgw.dev/gateway-controller"
            continue
        if obj["apiVersion"] == "llmgw.dev/v1alpha1":
            continue  # our own kinds: test_redis_value_becomes_class_wide_gateway_parameters
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_values_reach_the_controller() -> None:
    objs = objects(VALUES_CASES["everything"])
    [deployment] = find(objs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example/llmgw:1.2.3" and container["imagePullPolicy"] == "Always"
    assert container["resources"] == VALUES_CASES["everything"]["resources"]
    assert {"name": "LLMGW_LOG_LEVEL", "value": "DEBUG"} in container["env"]
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert not find(objs, "GatewayClass") and not find(objs, "NetworkPolicy")
    # The arguments are ones `llmgw controller` accepts, with the values given.
    args = build_parser().parse_args(container["args"])
    assert args.otlp_endpoint == "otel-collector.telemetry:4317" and args.trace_sampling == ["10"]
    assert args.dataplane_image == "registry.example/llmgw:1.2.3"


def test_redis_value_becomes_class_wide_gateway_parameters() -> None:
    """`redis.secretName` -> GatewayParameters (extproc.limits.storeSecretRef, as docs/limits.md documents)
    that the GatewayClass names, so every Gateway of the class shares one limits store."""
    objs = objects(VALUES_CASES["redis"])
    [params] = find(objs, "GatewayParameters")
    [gc] = find(objs, "GatewayClass")
    assert params["spec"]["extproc"]["limits"] == {
        "storeSecretRef": {"name": "llmgw-redis", "key": "url"},
        "failureMode": "FailOpen",
    }
    crd = yaml.safe_load((ROOT / "crds" / "llmgw.dev_gatewayparameters.yaml").read_text())
    assert schema_errors(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], params) == []
    # What the data plane pods get from it (provision.py, as docs/limits.md documents).
    _, extproc = provision.desired_objects(
        Resource("gateway.networking.k8s.io/v1", "Gateway", "gw", "team", {"spec": {"listeners": []}}),
        spec=params["spec"],
        settings=provision.Settings(image="llmgw:1", xds_host="ctl"),
    )[2]["spec"]["template"]["spec"]["containers"]
    assert {"name": "LLMGW_STORE", "valueFrom": {"secretKeyRef": {"name": "llmgw-redis", "key": "url"}}} in extproc[
        "env"
    ]
    ref = gc["spec"]["parametersRef"]
    assert (ref["group"], ref["kind"], ref["name"]) == ("llmgw.dev", "GatewayParameters", params["metadata"]["name"])
    assert ref["namespace"] == params["metadata"]["namespace"]
    # The controller resolves the class reference (provision.parameters_for merges it under a Gateway's own).
    key = f"{params['metadata']['namespace']}/{params['metadata']['name']}"
    resource = Resource(
        "llmgw.dev/v1alpha1", "GatewayParameters", params["metadata"]["name"], key.split("/")[0], params
    )
    gateway = Resource("gateway.networking.k8s.io/v1", "Gateway", "gw", "team", {"spec": {"listeners": []}})
    class_res = Resource("gateway.networking.k8s.io/v1", "GatewayClass", gc["metadata"]["name"], "", gc)
    merged, problem = provision.parameters_for(gateway, class_res, {key: resource})
    assert problem == "" and merged["extproc"]["limits"]["storeSecretRef"]["name"] == "llmgw-redis"
    assert (
        not find(objects({}), "GatewayParameters")
        and "parametersRef" not in find(objects({}), "GatewayClass")[0]["spec"]
    )


def test_defaults_match_deploy_kustomization() -> None:
    """The chart and deploy/ (kubectl apply -k) install the same controller with the same rights."""
    chart = objects({})
    deploy = [
        d
        for f in ("rbac.yaml", "controller.yaml", "gatewayclass.yaml")
        for d in yaml.safe_load_all((ROOT / "deploy" / f).read_text())
        if d
    ]
    for kind in ("ClusterRole", "Role"):
        [mine], [theirs] = find(chart, kind), find(deploy, kind)
        assert mine["rules"] == theirs["rules"], kind
    [mine_dep], [their_dep] = find(chart, "Deployment"), find(deploy, "Deployment")
    mine_c, their_c = (
        mine_dep["spec"]["template"]["spec"]["containers"][0],
        their_dep["spec"]["template"]["spec"]["containers"][0],
    )
    assert mine_c["args"] == their_c["args"]
    assert (
        mine_dep["spec"]["template"]["metadata"]["annotations"]
        == their_dep["spec"]["template"]["metadata"]["annotations"]
    )
    assert mine_c["ports"] == their_c["ports"] and mine_c["securityContext"] == their_c["securityContext"]
    assert find(chart, "GatewayClass")[0]["spec"] == find(deploy, "GatewayClass")[0]["spec"]
    assert {o["kind"] for o in chart} == {o["kind"] for o in deploy}


def test_crds_are_the_repositorys() -> None:
    crds = CHART / "crds"
    assert crds.is_symlink() and crds.resolve() == (ROOT / "crds").resolve()
    for path in sorted(crds.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition"
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("helm") is None, reason="no helm binary (not packaged for PyPI or Debian)")
def test_helm_lint_and_template() -> None:
    lint = subprocess.run(["helm", "lint", str(CHART)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run(
        ["helm", "template", "llmgw", str(CHART), "--namespace", "llmgw-system"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert {d["kind"] for d in yaml.safe_load_all(out.stdout) if d} == {o["kind"] for o in objects({})}
