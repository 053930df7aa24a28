"""Keys stay out of logs and error messages; a client cannot pick a backend by header.

A canary key is planted in a Secret; whatever goes wrong (a broken YAML file, a
value that cannot be a header, a rejected reload, a request) the canary must
never appear in what the gateway prints.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.compile import compile_paths
from tests.harness import REPO

pytestmark = pytest.mark.faults

CANARY = "sk-CANARY-7f3a9c"

GATEWAY = """
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
  listeners: [{name: http, protocol: HTTP, port: 18080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{group: llmgw.dev, kind: AIBackend, name: b}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: b, namespace: default}
spec:
  ai: {provider: {openai: {}, host: 127.0.0.1, port: 9}}
  policies: {auth: {secretRef: {name: key}}}
"""

# Secret files a hand edit can break, each with the key on the broken line.
BROKEN_SECRETS = {
    "unquoted colon": f"stringData:\n  Authorization: {CANARY}: x\n",
    "unterminated quote": f'stringData:\n  Authorization: "{CANARY}\n',
    "unterminated flow": f"stringData:\n  Authorization: [{CANARY}\n",
    "bad escape": f'stringData:\n  Authorization: "\\q{CANARY}"\n',
    "alias": f"stringData:\n  Authorization: *{CANARY}\n",
    "tag": f"stringData:\n  Authorization: !{CANARY} x\n",
    "tab": f"stringData:\n  Authorization: {CANARY}\n\tx: 1\n",
    "trailing junk": f"stringData:\n  Authorization: '{CANARY}' junk\n",
    "duplicate anchor": f"stringData:\n  a: &{CANARY} x\n  b: &{CANARY} y\n",
}


def _secret(body: str) -> str:
    return "apiVersion: v1\nkind: Secret\nmetadata: {name: key, namespace: default}\n" + body


def _llmgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(BROKEN_SECRETS))
def test_broken_secret_yaml_is_reported_without_its_content(tmp_path: Path, case: str) -> None:
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    (tmp_path / "secret.yaml").write_text(_secret(BROKEN_SECRETS[case]))
    problems = [str(p) for p in compile_paths([tmp_path]).problems]
    text = "\n".join(problems)
    assert "secret.yaml: file: invalid YAML" in text, text
    assert "line " in text  # still says where
    assert CANARY not in text
    assert "sk-CANARY" not in text and "CANARY" not in text


def test_validate_output_never_quotes_a_broken_secret(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    for i, body in enumerate(BROKEN_SECRETS.values()):
        (tmp_path / f"secret-{i}.yaml").write_text(_secret(body))
    result = _llmgw("validate", "-f", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("invalid YAML") == len(BROKEN_SECRETS), result.stderr
    assert "CANARY" not in result.stdout + result.stderr


BAD_VALUES = {
    "newline inside": (f"stringData:\n  Authorization: |-\n    {CANARY}\n    second-line\n", "line break"),
    "carriage return": (f'stringData:\n  Authorization: "{CANARY}\\rx"\n', "line break"),
    "NUL": (f'stringData:\n  Authorization: "{CANARY}\\0x"\n', "control character"),
    "base64 newline": (
        "data:\n  Authorization: " + base64.b64encode(CANARY.encode() + b"\nx").decode() + "\n",
        "line break",
    ),
    "list": (f"stringData:\n  Authorization: [{CANARY}]\n", "must be a string, not a list"),
    "mapping": (f"stringData:\n  Authorization: {{{CANARY}: 1}}\n", "must be a string, not a mapping"),
    "number": ("stringData:\n  Authorization: 12345678\n", "must be a string, not a number"),
    "data list": (f"data:\n  Authorization: [{CANARY}]\n", "must be a string, not a list"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_secret_value_that_cannot_be_a_header_is_a_problem(tmp_path: Path, case: str) -> None:
    body, expected = BAD_VALUES[case]
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    (tmp_path / "secret.yaml").write_text(_secret(body))
    compiled = compile_paths([tmp_path])
    assert not compiled.ok
    text = "\n".join(str(p) for p in compiled.problems)
    assert expected in text, text
    assert "Secret default/key" in text
    assert "Authorization" in text  # names the key ...
    assert "CANARY" not in text and "12345678" not in text  # ... never the value


def test_trailing_newline_of_a_key_is_still_fine(tmp_path: Path) -> None:
    """`echo KEY | base64` adds a final newline; that one is stripped, as before."""
    encoded = base64.b64encode(f"{CANARY}\n".encode()).decode()
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    (tmp_path / "secret.yaml").write_text(_secret(f"data:\n  Authorization: {encoded}\n"))
    compiled = compile_paths([tmp_path])
    assert compiled.ok, compiled.problems


def test_inline_key_with_a_line_break_is_a_problem(tmp_path: Path) -> None:
    gw = GATEWAY.replace("{secretRef: {name: key}}", f'{{key: "{CANARY}\\nx"}}')
    (tmp_path / "gw.yaml").write_text(gw)
    text = "\n".join(str(p) for p in compile_paths([tmp_path]).problems)
    assert "spec.policies.auth.key: cannot be sent as an HTTP header: it contains a line break" in text, text
    assert "CANARY" not in text


def test_aws_secret_with_a_line_break_is_a_problem(tmp_path: Path) -> None:
    gw = GATEWAY.replace(
        "ai: {provider: {openai: {}, host: 127.0.0.1, port: 9}}",
        "ai: {provider: {bedrock: {model: m, region: us-east-1}}}",
    ).replace("{secretRef: {name: key}}", "{aws: {secretRef: {name: key}}}")
    (tmp_path / "gw.yaml").write_text(gw)
    (tmp_path / "secret.yaml").write_text(_secret(f'stringData:\n  accessKey: AKIA0000\n  secretKey: "{CANARY}\\nx"\n'))
    text = "\n".join(str(p) for p in compile_paths([tmp_path]).problems)
    assert "Secret default/key key 'secretKey' cannot be used in an HTTP header" in text, text
    assert "CANARY" not in text
