"""Static AgentgatewayBackends and Service refs in the pure translation: every field acted upon or reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.gatewayapi import Translation, translate
from controlplane.resources import load_files
from tests.harness import gateway_yaml

HEAD = """\
apiVersion: v1
kind: Secret
metadata: {name: k, namespace: default}
stringData: {Authorization: Bearer sk-from-secret, raw: sk-raw}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: s, namespace: default}
spec:
"""


def _translate(tmp_path: Path, text: str) -> Translation:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    resources, problems = load_files([path])
    assert not problems, [str(p) for p in problems]
    return translate(resources, environ={})


def _static(tmp_path: Path, spec: str) -> Translation:
    return _translate(tmp_path, HEAD + "".join(f"  {line}\n" for line in spec.strip().splitlines()))


@pytest.mark.parametrize(
    ("spec", "header"),
    [
        ("static: {host: h, port: 1}\npolicies: {auth: {secretRef: {name: k}}}", "Bearer sk-from-secret"),
        ("static: {host: h, port: 1}\npolicies: {auth: {secretRef: {name: k, key: raw}}}", "Bearer sk-raw"),
        ("static: {host: h, port: 1}\npolicies: {auth: {key: sk-inline}}", "Bearer sk-inline"),
    ],
)
def test_static_credentials(tmp_path: Path, spec: str, header: str) -> None:
    from controlplane.xds.credential_injector import sds_secrets

    tr = _static(tmp_path, spec)
    assert not tr.problems, [str(p) for p in tr.problems]
    (secret,) = sds_secrets(tr.ir)
    assert secret == {"name": "llmgw-credential/default/s", "generic_secret": {"secret": {"inline_string": header}}}


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ("static: {unixPath: /run/x.sock}", ["spec.static.unixPath", "spec.static.host", "spec.static.port"]),
        ("static: {host: h, port: 1}\npolicies: {tunnel: {proxy: {}}}", ["spec.policies.tunnel"]),
        ("static: {host: h, port: 1}\npolicies: {health: {}}", ["spec.policies.health"]),
        ("static: {host: h, port: 1}\npolicies: {ai: {modelAliases: {a: b}}}", ["spec.policies.ai"]),
        ("static: {host: h, port: 1}\npolicies: {tls: {alpnProtocols: [h2]}}", ["spec.policies.tls.alpnProtocols"]),
        ("static: {host: h, port: 1}\npolicies: {auth: {aws: {}}}", ["spec.policies.auth.aws"]),
        (
            "static: {host: h, port: 1}\npolicies: {http: {requestTimeout: 30s, retries: 2}}",
            ["spec.policies.http.retries"],
        ),
        ("static: {host: h, port: 1}\nmcp: {}", ["spec.mcp"]),
        ("static: {host: h}", ["spec.static.port"]),
    ],
)
def test_unsupported_and_invalid_fields_are_named(tmp_path: Path, spec: str, fields: list[str]) -> None:
    tr = _static(tmp_path, spec)
    assert [p.field for p in tr.problems] == fields, [str(p) for p in tr.problems]
    assert not tr.ir.plain_backends


ROUTE = (
    gateway_yaml(port=8080)
    + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: {refs}
"""
)


def test_a_rule_cannot_mix_ai_and_plain_backends(tmp_path: Path) -> None:
    ai = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: ai, namespace: default}
spec: {ai: {provider: {openai: {}}}}
"""
    refs = (
        "[{name: s, group: agentgateway.dev, kind: AgentgatewayBackend}, {name: ai, group: llmgw.dev, kind: AIBackend}]"
    )
    tr = _translate(tmp_path, HEAD + "  static: {host: h, port: 1}\n---\n" + ROUTE.replace("{refs}", refs) + ai)
    assert [(p.field, p.reason) for p in tr.problems] == [("spec.rules[0].backendRefs", "Invalid")]


def test_service_refs(tmp_path: Path) -> None:
    refs = "[{name: svc, port: 8000}]"
    tr = _translate(tmp_path, ROUTE.replace("{refs}", refs))
    assert not tr.problems
    (backend,) = tr.ir.plain_backends
    assert (backend.host, backend.port, backend.cluster) == (
        "svc.default.svc.cluster.local",
        8000,
        "service/default/svc/8000",
    )
    assert [(n.field, n.reason) for n in tr.notes] == [("spec.rules[0].backendRefs[0]", "ResolvedByDNS")]
    listed = """---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec: {ports: [{port: 80}]}
"""
    tr = _translate(tmp_path, ROUTE.replace("{refs}", refs) + listed)
    assert [p.message for p in tr.problems] == ["Service default/svc has no port 8000 (it has [80])"]
