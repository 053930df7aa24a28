"""HTTPS listeners in translation: certificateRefs resolved, SNI chains, keys only in SDS secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from controlplane.compile import compile_paths
from controlplane.kubernetes.reconcile import referenced
from controlplane.kubernetes.status import _listener_conditions
from controlplane.resources import Problem
from controlplane.xds import names

CA = trustme.CA()
LEAF = CA.issue_cert("api.example.test")
OTHER = CA.issue_cert("other.test")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _secret(name: str, crt: str, key: str, ns: str = "default") -> str:
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {ns}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{_indent(crt)}
  tls.key: |
{_indent(key)}
"""


def _gateway(listeners: str) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners:
{listeners}
"""


HTTPS_PAIR = """  - name: api
    protocol: HTTPS
    port: 8443
    hostname: api.example.test
    tls: {certificateRefs: [{name: api-cert}]}
  - name: any
    protocol: HTTPS
    port: 8443
    tls: {mode: Terminate, certificateRefs: [{kind: Secret, group: "", name: other-cert}]}
"""


def _compile(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    (tmp_path / "c.yaml").write_text(text)
    return compile_paths([tmp_path])


def _pem(cert: trustme.LeafCert) -> tuple[str, str]:
    return cert.cert_chain_pems[0].bytes().decode(), cert.private_key_pem.bytes().decode()


def test_sni_chains_name_sds_secrets_and_only_secrets_hold_the_key(tmp_path: Path) -> None:
    crt, key = _pem(LEAF)
    text = _gateway(HTTPS_PAIR) + _secret("api-cert", crt, key) + _secret("other-cert", *_pem(OTHER))
    compiled = _compile(tmp_path, text)
    assert compiled.ok, [str(p) for p in compiled.problems]
    (listener,) = compiled.envoy.listeners
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    chains = listener["filter_chains"]
    assert [c.get("filter_chain_match") for c in chains] == [None, {"server_names": ["api.example.test"]}]
    sds = [
        c["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"]
        for c in chains
    ]
    assert sds == ["llmgw-tls/default/other-cert", "llmgw-tls/default/api-cert"]
    assert "PRIVATE KEY" not in repr(compiled.envoy) and "PRIVATE KEY" not in repr(compiled.ir)
    secrets = {s.name: s for s in compiled.protos[names.TYPE_SECRET]}
    assert secrets["llmgw-tls/default/api-cert"].tls_certificate.private_key.inline_string == key
    assert secrets["llmgw-tls/default/api-cert"].tls_certificate.certificate_chain.inline_string == crt


@pytest.mark.parametrize(
    ("listener", "extra", "field", "reason", "says"),
    [
        (
            "tls: {certificateRefs: [{name: missing}]}",
            "",
            "tls.certificateRefs[0]",
            "InvalidCertificateRef",
            "not found",
        ),
        (
            "tls: {certificateRefs: [{name: c, namespace: certs}]}",
            _secret("c", *_pem(LEAF), ns="certs"),
            "tls.certificateRefs[0]",
            "RefNotPermitted",
            "ReferenceGrant",
        ),
        (
            "tls: {certificateRefs: [{name: c}]}",
            _secret("c", _pem(LEAF)[0], _pem(OTHER)[1]),
            "tls.certificateRefs[0]",
            "InvalidCertificateRef",
            "does not belong",
        ),
        (
            "tls: {certificateRefs: [{name: c}]}",
            _secret("c", "not a certificate", _pem(OTHER)[1]),
            "tls.certificateRefs[0]",
            "InvalidCertificateRef",
            "not a PEM certificate",
        ),
        ("tls: {mode: Passthrough, certificateRefs: [{name: c}]}", "", "tls.mode", "UnsupportedValue", "Passthrough"),
        ("{}", "", "tls", "Invalid", "required on an HTTPS listener"),
        (
            "tls: {certificateRefs: [{name: c}], options: {tls.min-version: '1.3'}}",
            _secret("c", *_pem(LEAF)),
            "tls.options",
            "Unsupported",
            "not supported by llmgw",
        ),
        (
            "tls: {certificateRefs: [{kind: ConfigMap, name: c}]}",
            "",
            "tls.certificateRefs[0]",
            "InvalidCertificateRef",
            "not supported by llmgw",
        ),
    ],
)
def test_bad_certificate_refs_name_the_field_and_reason(
    tmp_path: Path, listener: str, extra: str, field: str, reason: str, says: str
) -> None:
    body = listener.removeprefix("tls: ") if listener.startswith("tls: ") else None
    tls = f"    tls: {body}\n" if body else ""
    text = _gateway(f"  - name: https\n    protocol: HTTPS\n    port: 8443\n{tls}") + extra
    compiled = _compile(tmp_path, text)
    (problem,) = [p for p in compiled.problems if p.obj == "Gateway default/gw"]
    assert problem.field == f"spec.listeners[0].{field}" and problem.reason == reason and says in problem.message
    assert "PRIVATE KEY" not in problem.message and "BEGIN" not in problem.message


def test_one_port_serves_one_protocol(tmp_path: Path) -> None:
    text = _gateway(
        "  - {name: a, protocol: HTTPS, port: 8443, tls: {certificateRefs: [{name: c}]}}\n"
        "  - {name: b, protocol: HTTP, port: 8443, hostname: b.test}\n"
    ) + _secret("c", *_pem(LEAF))
    (problem,) = _compile(tmp_path, text).problems
    assert problem.field == "spec.listeners[1].protocol" and problem.reason == "ProtocolConflict"


def test_certificate_problem_is_a_resolved_refs_condition() -> None:
    problem = Problem(
        "f", "Gateway default/gw", "spec.listeners[0].tls.certificateRefs[0]", "gone", "InvalidCertificateRef"
    )
    conds = {c.type: c for c in _listener_conditions({"name": "https"}, [problem], ready=True)}
    assert (conds["ResolvedRefs"].status, conds["ResolvedRefs"].reason) == (False, "InvalidCertificateRef")
    assert conds["Accepted"].status and not conds["Programmed"].status


def test_controller_caches_certificate_secrets_without_a_kind(tmp_path: Path) -> None:
    from controlplane.resources import load_files

    (tmp_path / "g.yaml").write_text(_gateway(HTTPS_PAIR))
    resources, _ = load_files([tmp_path])
    refs = referenced(resources)
    assert {("Secret", "default", "api-cert"), ("Secret", "default", "other-cert")} <= refs
