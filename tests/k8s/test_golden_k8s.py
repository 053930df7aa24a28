"""Golden tests of the Kubernetes provider's pure core: cluster objects -> status + provisioned objects.

For every ``tests/k8s/golden/<case>.in.yaml`` (objects as the API server would
hold them) ``reconcile`` computes the Plan; two golden files hold it:

- ``<case>.status.yaml``: the status the controller would write, per object;
- ``<case>.dataplane.yaml``: per Gateway, its listeners (in-pod ports), the
  backends it serves, the extproc config with credentials redacted, and the
  ServiceAccount, Service and Deployment it provisions.

Regenerate after an intended change and review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/k8s/test_golden_k8s.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.kubernetes.provision import Settings
from controlplane.kubernetes.reconcile import Plan, reconcile
from controlplane.resources import load_files
from tests import golden_files

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
NOW = "2025-01-01T00:00:00Z"
SETTINGS = Settings(image="ghcr.io/llmgw/llmgw:test", xds_host="llmgw-controller.llmgw-system.svc", xds_port=18000)
SECRET_VALUES = ("sk-secret-key", "c2stc2VjcmV0LWtleQ==")


def plan_for(case: str) -> Plan:
    resources, problems = load_files([GOLDEN / f"{case}.in.yaml"])
    assert not problems
    return reconcile(resources, settings=SETTINGS, now=NOW)


def status_doc(plan: Plan) -> dict[str, Any]:
    return {f"{k.kind} {k.namespace}/{k.name}": v for k, v in sorted(plan.statuses.items(), key=lambda i: str(i[0]))}


def dataplane_doc(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, gp in sorted(plan.gateways.items()):
        # What reaches this Gateway's extproc: which providers, and where their credential comes from.
        extproc = {
            pid: {"kind": p.kind, "host": p.host, "credential": p.auth.source if p.auth else None}
            for pid, p in sorted(gp.extproc.providers.items())
        }
        out[key] = {
            "listeners": [{"name": lst.name, "port": lst.port, "address": lst.address} for lst in gp.ir.listeners],
            "backends": sorted(gp.backends),
            "extproc_providers": extproc,
            "models": {gw: list(m) for gw, m in sorted(gp.extproc.models.items())},
            "objects": gp.objects,
        }
    return out


def check(path: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, sort_keys=False, width=120)
    for secret in SECRET_VALUES:
        assert secret not in text, f"a credential leaked into {path.name}"
    golden_files.check(path, text)


@pytest.mark.parametrize("case", CASES)
def test_status_golden(case: str) -> None:
    check(GOLDEN / f"{case}.status.yaml", status_doc(plan_for(case)))


@pytest.mark.parametrize("case", CASES)
def test_dataplane_golden(case: str) -> None:
    check(GOLDEN / f"{case}.dataplane.yaml", dataplane_doc(plan_for(case)))


@pytest.mark.parametrize("case", CASES)
def test_recomputing_with_written_status_changes_nothing(case: str) -> None:
    """Status is written only when it changed: feeding back what was written yields the same status."""
    resources, _ = load_files([GOLDEN / f"{case}.in.yaml"])
    first = reconcile(resources, settings=SETTINGS, now=NOW)
    written = []
    for res in resources:
        key = next(
            (k for k in first.statuses if (k.kind, k.namespace, k.name) == (res.kind, res.namespace, res.name)), None
        )
        body = {**res.body, "status": first.statuses[key]} if key else res.body
        written.append(dataclasses.replace(res, body=body))
    second = reconcile(written, settings=SETTINGS, now="2030-01-01T00:00:00Z")
    assert second.statuses == first.statuses
