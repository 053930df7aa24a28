"""CRD schemas (AIBackend, GatewayParameters) validate the repo's manifests and reject broken ones.

Every AIBackend and GatewayParameters found in examples/, deploy/, README.md, docs/ (YAML
code blocks) and the k8s golden inputs is checked against the CRD's
openAPIV3Schema with jsonschema, as the API server's strict field validation
would, and its CEL rules are evaluated with cel-python where installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_crds import cel_errors, schema_errors

ROOT = Path(__file__).resolve().parents[2]
CRDS = {
    "AIBackend": ROOT / "crds" / "llmgw.dev_aibackends.yaml",
    "GatewayParameters": ROOT / "crds" / "llmgw.dev_gatewayparameters.yaml",
}


def schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRDS[kind].read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def documents() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    files = [*ROOT.glob("examples/**/*.y*ml"), *ROOT.glob("deploy/**/*.y*ml"), *ROOT.glob("tests/k8s/golden/*.in.yaml")]
    # problems.in.yaml holds objects the API server would refuse (to test the translation's own checks).
    files = [p for p in files if p.name != "problems.in.yaml"]
    texts = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted(files)]
    for doc in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            texts.append((f"{doc.relative_to(ROOT)} block {i}", block))
    for where, text in texts:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            continue
        found += [(where, d) for d in docs if isinstance(d, dict) and d.get("kind") in CRDS]
    return found


DOCS = documents()


def test_generated_crds_are_current() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "crds" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_there_are_manifests_of_both_kinds() -> None:
    assert {d["kind"] for _, d in DOCS} == set(CRDS)


@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[f"{w}:{d['kind']}/{d['metadata']['name']}" for w, d in DOCS])
def test_repo_manifests_validate(where: str, doc: dict[str, Any]) -> None:
    s = schema(doc["kind"])
    assert doc["apiVersion"] == "llmgw.dev/v1alpha1", where
    assert schema_errors(s, doc) == [], where
    assert cel_errors(s, doc, "") == [], where


def params(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "llmgw.dev/v1alpha1", "kind": "GatewayParameters", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize(
    "spec",
    [
        {"replicas": -1},
        {"replicas": "2"},
        {"replica": 2},
        {"service": {"type": "Ingress"}},
        {"pod": {"labels": {"a": 1}}},
        {"envoy": {"resources": {"limits": {"memory": "lots"}}}},
        {"envoy": {"logLevel": "verbose"}},
        {"extproc": {"workers": 0}},
        {"imagePullPolicy": "Sometimes"},
    ],
)
def test_broken_parameters_are_rejected_by_the_schema(spec: dict[str, Any]) -> None:
    assert schema_errors(schema("GatewayParameters"), params(spec)) != []


def test_bad_label_keys_are_rejected_by_cel() -> None:
    pytest.importorskip("celpy")
    s = schema("GatewayParameters")
    bad = params({"pod": {"labels": {"not a key!": "x"}}})
    assert schema_errors(s, bad) == []
    assert cel_errors(s, bad, "") != []
    good = params({"pod": {"labels": {"azure.workload.identity/use": "true"}}})
    assert cel_errors(s, good, "") == []


def test_parameters_crd_shape() -> None:
    crd = yaml.safe_load(CRDS["GatewayParameters"].read_text())
    assert crd["metadata"]["name"] == "gatewayparameters.llmgw.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "GatewayParameters"
    quantities = schema("GatewayParameters")["properties"]["spec"]["properties"]["envoy"]["properties"]["resources"]
    assert quantities["properties"]["limits"]["additionalProperties"]["x-kubernetes-int-or-string"] is True
