"""Every field of an AI backend is acted upon or reported: provider-level auth, overrides, unsupported policies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controlplane.compile import compile_paths
from controlplane.gatewayapi import Translation, translate
from controlplane.resources import load_files
from extproc.contract import AuthConfig
from tests.harness import REPO

SECRET = """
---
apiVersion: v1
kind: Secret
metadata: {name: openai-api-key, namespace: default}
stringData: {api-key: sk-raw}
"""


def _backend(tmp_path: Path, provider: str, *, kind: str = "AgentgatewayBackend", spec_extra: str = "") -> Translation:
    api = "agentgateway.dev/v1alpha1" if kind == "AgentgatewayBackend" else "llmgw.dev/v1alpha1"
    text = f"""\
apiVersion: {api}
kind: {kind}
metadata: {{name: x, namespace: default}}
spec:
  ai:
    groups:
      - providers:
          - name: p
{textwrap.indent(textwrap.dedent(provider).strip(), " " * 12)}
{textwrap.indent(textwrap.dedent(spec_extra).strip(), "  ")}
{SECRET}"""
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    resources, problems = load_files([path])
    assert not problems, [str(p) for p in problems]
    return translate(resources, environ={})


def _header(tr: Translation) -> tuple[str, str]:
    assert not tr.problems, [str(p) for p in tr.problems]
    (auth,) = [p.auth for b in tr.ir.backends for p in b.providers]
    assert auth is not None
    return auth.header, AuthConfig(header=auth.header, prefix=auth.prefix, value=auth.value).header_value()


AKS_AUTH = "auth: {apiKey: {secretRef: {name: openai-api-key, key: api-key}}}"


@pytest.mark.parametrize("kind", ["AgentgatewayBackend", "AIBackend"])
@pytest.mark.parametrize(
    ("provider", "spec_extra", "expected"),
    [
        # The AKS tutorial: the key on the provider of a group, a raw key in the Secret.
        (f"openai: {{model: gpt-4o-mini}}\n{AKS_AUTH}", "", ("authorization", "Bearer sk-raw")),
        ("anthropic: {}\n" + AKS_AUTH, "", ("x-api-key", "sk-raw")),
        ("openai: {}\nauth: {secretRef: {name: openai-api-key, key: api-key}}", "", ("authorization", "Bearer sk-raw")),
        ("openai: {}\nauth: {key: sk-inline}", "", ("authorization", "Bearer sk-inline")),
        ("openai: {}\nauth: {apiKey: {key: sk-inline}}", "", ("authorization", "Bearer sk-inline")),
        ("openai: {}\npolicies: {auth: {apiKey: {key: 'Bearer sk-x'}}}", "", ("authorization", "Bearer sk-x")),
        ("openai: {}", f"policies: {{{AKS_AUTH}}}", ("authorization", "Bearer sk-raw")),
    ],
)
def test_provider_level_auth_forms(tmp_path: Path, kind: str, provider: str, spec_extra: str, expected: tuple) -> None:
    assert _header(_backend(tmp_path, provider, kind=kind, spec_extra=spec_extra)) == expected


# (provider block, spec extra, [(field, message)]) — the exact problems each field yields.
P = "spec.ai.groups[0].providers[0]"
UNSUPPORTED_CASES = [
    (
        "openai: {}",
        "policies: {ai: {promptCaching: {cacheTTL: 5m}}}",
        [("spec.policies.ai.promptCaching.cacheTTL", "")],
    ),
    (
        "openai: {}",
        "policies: {ai: {promptGuard: {request: [{regex: {builtins: [Ssn]}, x: 1}]}}}",
        [("spec.policies.ai.promptGuard.request[0].x", "")],
    ),
    ("openai: {}\npolicies: {ai: {promptGuard: {}}}", "", [(f"{P}.policies.ai.promptGuard", "yet")]),
    (
        "openai: {}",
        "policies: {http: {requestTimeout: 10s, idleTimeout: 1s}}",
        [("spec.policies.http.idleTimeout", "")],
    ),
    ("openai: {}", "policies: {tcp: {keepalive: {}}}", [("spec.policies.tcp.keepalive", "")]),
    ("openai: {}", "policies: {tunnel: {}}", [("spec.policies.tunnel", "")]),
    ("openai: {}", "policies: {tls: {alpnProtocols: [h2]}}", [("spec.policies.tls.alpnProtocols", "")]),
    ("openai: {}\nbogus: 1", "", [(f"{P}.bogus", "")]),
    ("openai: {modle: gpt-4o}", "", [(f"{P}.openai.modle", "")]),
    (
        "openai: {}\nauth: {secretRef: {name: openai-api-key, key: api-key, namespace: other}}",
        "",
        [(f"{P}.auth.secretRef.namespace", "")],
    ),
]


@pytest.mark.parametrize("kind", ["AgentgatewayBackend", "AIBackend"])
@pytest.mark.parametrize(("provider", "spec_extra", "expected"), UNSUPPORTED_CASES)
def test_each_unread_field_is_a_problem(
    tmp_path: Path, kind: str, provider: str, spec_extra: str, expected: list[tuple[str, str]]
) -> None:
    tr = _backend(tmp_path, provider, kind=kind, spec_extra=spec_extra)
    got = [(p.obj, p.field, p.message) for p in tr.problems]
    want = [
        (f"{kind} default/x", fld, "is not supported by llmgw" + (" yet" if later else "")) for fld, later in expected
    ]
    assert got == want


def test_passthrough_forwards_the_client_credential(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "anthropic: {}\nauth: {passthrough: {}}")
    assert not tr.problems, [str(p) for p in tr.problems]
    (auth,) = [p.auth for b in tr.ir.backends for p in b.providers]
    assert auth is not None and (auth.kind, auth.header, auth.value) == ("passthrough", "x-api-key", "")
    bad = _backend(tmp_path, "openai: {}\nauth: {passthrough: {header: x}}")
    assert [(p.field, p.message) for p in bad.problems] == [
        (f"{P}.auth.passthrough", "takes no fields (write `passthrough: {}`)")
    ]


def test_static_is_agentgateway_kind_only_and_one_backend_type(tmp_path: Path) -> None:
    ours = _backend(tmp_path, "openai: {}", kind="AIBackend", spec_extra="static: {host: h, port: 1}")
    assert [(p.field, p.message) for p in ours.problems] == [("spec.static", "is not supported by llmgw")]
    both = _backend(tmp_path, "openai: {}", kind="AgentgatewayBackend", spec_extra="static: {host: h, port: 1}")
    assert [(p.field, p.message) for p in both.problems] == [
        ("spec.ai", "cannot be set together with spec.static (one backend type per object)")
    ]


def test_host_and_path_override_become_host_port_path(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "openai: {}\nhostOverride: {host: 127.0.0.1, port: 9000}\npathOverride: {fullPath: /x}")
    assert not tr.problems, [str(p) for p in tr.problems]
    (prov,) = tr.ir.backends[0].providers
    assert (prov.host, prov.port, prov.path, prov.tls) == ("127.0.0.1", 9000, "/x", None)


def test_two_credentials_in_one_auth_is_a_problem(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "openai: {}\nauth: {key: a, apiKey: {secretRef: {name: openai-api-key, key: api-key}}}")
    assert [(p.field, p.message) for p in tr.problems] == [(f"{P}.auth", "set exactly one of key, apiKey")]


def test_both_auth_places_is_a_problem(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "openai: {}\nauth: {key: a}\npolicies: {auth: {key: b}}")
    assert [p.field for p in tr.problems] == [f"{P}.auth"]


def test_validate_prints_unsupported_field_with_file_object_field(tmp_path: Path) -> None:
    _backend(tmp_path, "openai: {}", spec_extra="policies: {ai: {promptGuard: {request: []}}}")
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", "-f", str(tmp_path / "m.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    line = f"{tmp_path / 'm.yaml'}: AgentgatewayBackend default/x: spec.policies.ai.promptGuard.request: "
    assert line + "must be a non-empty list" in result.stderr


ROUTED = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: llmgw}
spec: {controllerName: llmgw.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: llmgw
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: x}]}]
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: x, namespace: default}
spec:
  ai:
    groups:
      - providers:
          - {name: a, openai: {}, host: 127.0.0.1, port: 1}
%s
  policies: {tcp: {connectTimeout: 2s}, http: {requestTimeout: 7s}}
"""


@pytest.mark.parametrize(
    ("second", "route_timeout", "per_try"),
    [("", "7s", None), ("          - {name: b, openai: {}, host: 127.0.0.2, port: 1}", "300s", "7s")],
)
def test_connect_and_request_timeouts_are_acted_upon(
    tmp_path: Path, second: str, route_timeout: str, per_try: str | None
) -> None:
    (tmp_path / "m.yaml").write_text(ROUTED % second, encoding="utf-8")
    compiled = compile_paths([tmp_path / "m.yaml"], environ={})
    assert compiled.ok, [str(p) for p in compiled.problems]
    assert compiled.envoy is not None
    dump = json.dumps(compiled.envoy.__dict__, default=str)
    assert '"connect_timeout": "2s"' in dump
    assert f'"timeout": "{route_timeout}"' in dump
    assert ('"per_try_timeout": "7s"' in dump) == (per_try is not None)


def test_per_provider_timeout_that_differs_is_a_problem(tmp_path: Path) -> None:
    text = ROUTED % "          - {name: b, openai: {}, host: h, port: 1, policies: {tcp: {connectTimeout: 9s}}}"
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    compiled = compile_paths([tmp_path / "m.yaml"], environ={})
    assert [(p.field, p.reason) for p in compiled.problems if p.obj.startswith("Agentgateway")] == [
        ("spec.policies.tcp.connectTimeout", "Unsupported"),
        ("spec.ai.groups[0].providers[1].policies.tcp.connectTimeout", "Unsupported"),
    ]


# AIBackend specs: the CRD schema and standalone validation agree on each (accepted or not).
SCHEMA_AGREEMENT = {
    "aks-provider-auth": (f"openai: {{model: gpt-4o-mini}}\n{AKS_AUTH}", "", True),
    "apikey-inline": ("openai: {}\nauth: {apiKey: {key: sk-x}}", "", True),
    "policies-apikey": ("openai: {}", f"policies: {{{AKS_AUTH}}}", True),
    "timeouts": ("openai: {}", "policies: {tcp: {connectTimeout: 2s}, http: {requestTimeout: 9s}}", True),
    "unknown-provider-field": ("openai: {}\nbogus: 1", "", False),
    "host-override": ("openai: {}\nhostOverride: {host: h, port: 1}", "", False),
    "unknown-policy": ("openai: {}", "policies: {ai: {promptGuard: {}}}", False),
    "ai-transforms": (
        "openai: {}\npolicies: {ai: {defaults: [{field: temperature, value: 0.5}]}}",
        "policies: {ai: {modelAliases: {fast: gpt-4o-mini}, overrides: [{field: stop, value: [a, b]}], "
        "transformations: [{field: user, expression: \"'x'\"}], prompt: {append: [{role: USER, content: hi}]}, "
        "promptCaching: {cacheTools: true, minTokens: 0}}}",
        True,
    ),
    "ai-transforms-bad-value": ("openai: {}", "policies: {ai: {promptCaching: {minTokens: -1}}}", False),
    "ai-transforms-unknown": ("openai: {}", "policies: {ai: {prompt: {middle: []}}}", False),
    "prompt-guard": (
        "openai: {}",
        "policies: {ai: {promptGuard: {request: [{regex: {builtins: [Ssn], action: Reject}, scope: [Messages]}], "
        "response: [{webhook: {backendRef: {name: hook, port: 80}, failureMode: FailOpen}}]}}}",
        True,
    ),
    "prompt-guard-bad-action": (
        "openai: {}",
        "policies: {ai: {promptGuard: {request: [{regex: {action: Drop}}]}}}",
        False,
    ),
    "unknown-setting": ("openai: {modle: x}", "", False),
    "unknown-tls-field": ("openai: {}", "policies: {tls: {alpnProtocols: [h2]}}", False),
    "unknown-secretref-field": ("openai: {}\nauth: {secretRef: {name: openai-api-key, namespace: o}}", "", False),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_AGREEMENT))
def test_aibackend_standalone_matches_crd_schema(tmp_path: Path, name: str) -> None:
    import yaml

    from tests.test_crds import CRD_PATH, schema_errors

    provider, spec_extra, accepted = SCHEMA_AGREEMENT[name]
    tr = _backend(tmp_path, provider, kind="AIBackend", spec_extra=spec_extra)
    (doc, *_) = yaml.safe_load_all((tmp_path / "m.yaml").read_text())
    (crd,) = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    errors = schema_errors(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], doc)
    assert (errors == [], tr.problems == []) == (accepted, accepted), (errors, [str(p) for p in tr.problems])
