"""Every field of the seeds' AgentgatewayBackend shapes is acted upon or reported, never silently dropped.

The field lists are agentgateway's CRD types (controller/api/v1alpha1/agentgateway:
`AgentgatewayBackendSpec`, `StaticBackend`, `BackendFull`/`BackendSimple`,
`BackendTCP`, `BackendHTTP`, `BackendTLS`, `BackendAuth`, `LLMProvider`,
`OpenAIConfig`, `CustomProvider`). For each field the test writes a backend that
sets it and asserts: llmgw supports it (no problem names it), or `validate`
reports a problem naming exactly that field (file, object and field).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controlplane.gatewayapi import translate
from controlplane.resources import load_files

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "k", "namespace": "ns"},
    "stringData": {"Authorization": "sk"},
}

# (path under spec, sample value, supported by llmgw)
STATIC_FIELDS: list[tuple[str, object, bool]] = [
    ("static.host", "h", True),
    ("static.port", 443, True),
    ("static.unixPath", "/run/s.sock", False),
    ("policies.tcp.connectTimeout", "2s", True),
    ("policies.tcp.keepalive", {}, False),
    ("policies.http.requestTimeout", "30s", True),
    ("policies.http.version", "HTTP2", False),
    ("policies.tls.sni", "h", True),
    ("policies.tls.insecureSkipVerify", "All", True),
    ("policies.tls.caCertificateRefs", [{"name": "ca", "kind": "Secret"}], True),
    ("policies.tls.certificateSource", "SPIFFE", False),
    ("policies.tls.mtlsCertificateRef", [{"name": "m"}], False),
    ("policies.tls.verifySubjectAltNames", ["h"], False),
    ("policies.tls.alpnProtocols", ["h2"], False),
    ("policies.tls.keyExchangeGroups", ["X25519"], False),
    ("policies.tunnel", {"url": "http://proxy:3128"}, False),
    ("policies.auth.key", "sk-inline", True),
    ("policies.auth.secretRef", {"name": "k"}, True),
    ("policies.auth.passthrough", {}, True),
    ("policies.auth.aws", {}, False),
    ("policies.auth.azure", {}, False),
    ("policies.auth.gcp", {}, False),
    ("policies.auth.oauthTokenExchange", {}, False),
    ("policies.auth.crossAppAccess", {}, False),
    ("policies.auth.jwtSign", {}, False),
    ("policies.auth.credentials", [], False),
    ("policies.ai", {"routes": {"*": "Passthrough"}}, False),
    ("policies.mcp", {}, False),
    ("policies.transformation", {}, False),
    ("policies.health", {}, False),
    ("policies.extAuth", {"url": "http://a"}, False),
    ("a2a", {"host": "h", "port": 1}, False),
    ("mcp", {"targets": []}, False),
    ("dynamicForwardProxy", {}, False),
    ("aws", {"agentCore": {}}, False),
]

# Fields of an AI backend's provider block (spec.ai.provider) and of its policies.
AI_FIELDS: list[tuple[str, object, bool]] = [
    ("ai.provider.openai.model", "gpt-4o-mini", True),
    ("ai.provider.openai.moderation", {"model": "omni-moderation-latest"}, False),
    ("ai.provider.host", "127.0.0.1", True),
    ("ai.provider.port", 9000, True),
    ("ai.provider.path", "/v1/x", True),
    ("ai.provider.pathPrefix", "/v2", True),
    ("policies.ai.routes", {"/v1/models": "Passthrough"}, True),
    ("policies.ai.promptGuard", {"request": [{"regex": {"builtins": ["Ssn"], "action": "Reject"}}]}, True),
    ("policies.ai.modelAliases", {"fast": "gpt-4o-mini"}, True),
    ("policies.ai.defaults", [{"field": "temperature", "value": 0.2}], True),
    ("policies.ai.overrides", [{"field": "max_tokens", "value": 64}], True),
    ("policies.ai.prompt", {"prepend": [{"role": "SYSTEM", "content": "Be brief."}]}, True),
    ("policies.ai.promptCaching", {"minTokens": 0}, True),
    ("policies.ai.transformations", [{"field": "user", "expression": "'x'"}], True),
    ("policies.ai.finalTransformations", [{"field": "user", "expression": "'x'"}], True),
    ("policies.auth.passthrough", {}, True),
    ("policies.auth.oauthTokenExchange", {}, False),
    ("policies.auth.jwtSign", {}, False),
    ("policies.health", {}, False),
    ("policies.transformation", {}, False),
    ("policies.tunnel", {}, False),
    ("policies.http.version", "HTTP1", False),
]


def _set(spec: dict, path: str, value: object) -> None:
    node = spec
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _problems(tmp_path: Path, spec: dict) -> list[tuple[str, str]]:
    backend = {
        "apiVersion": "agentgateway.dev/v1alpha1",
        "kind": "AgentgatewayBackend",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": spec,
    }
    ca = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ca", "namespace": "ns"},
        "stringData": {"ca.crt": "x"},
    }
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump_all([backend, SECRET, ca]), encoding="utf-8")
    resources, load_problems = load_files([path])
    assert not load_problems
    tr = translate(resources, environ={})
    for p in tr.problems:
        assert p.file == str(path) and p.obj == "AgentgatewayBackend ns/b"
    return [(p.field, p.message) for p in tr.problems]


@pytest.mark.parametrize(("path", "value", "supported"), STATIC_FIELDS, ids=[f[0] for f in STATIC_FIELDS])
def test_static_backend_field(tmp_path: Path, path: str, value: object, supported: bool) -> None:
    spec: dict = {"static": {} if path == "static.unixPath" else {"host": "h", "port": 443}}
    _set(spec, path, value)
    problems = _problems(tmp_path, spec)
    fld = f"spec.{path}"
    if supported:
        assert not problems, problems
    else:
        assert any(f == fld for f, _ in problems), (fld, problems)


@pytest.mark.parametrize(("path", "value", "supported"), AI_FIELDS, ids=[f[0] for f in AI_FIELDS])
def test_ai_backend_field(tmp_path: Path, path: str, value: object, supported: bool) -> None:
    spec: dict = {"ai": {"provider": {"openai": {}}}}
    _set(spec, path, value)
    if path == "ai.provider.port":
        spec["ai"]["provider"]["host"] = "127.0.0.1"
    problems = _problems(tmp_path, spec)
    fld = f"spec.{path}"
    if supported:
        assert not problems, problems
    else:
        assert any(f == fld for f, _ in problems), (fld, problems)
        assert all("not supported by llmgw" in m for f, m in problems if f == fld)
