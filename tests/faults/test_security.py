"""Keys stay out of logs and error messages; a client cannot pick a backend by header.

A canary key is planted in a Secret; whatever goes wrong (a broken YAML file, a
value that cannot be a header, a rejected reload, a request) the canary must
never appear in what the gateway prints.
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controlplane.compile import compile_paths
from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, wait_until

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


# --- through the real gateway --------------------------------------------------------------

CHEAP_KEY = "sk-CANARY-cheap-51e0"
PREMIUM_KEY = "sk-CANARY-premium-93d4"

TWO_BACKENDS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /v1}}
          headers: [{{name: x-gateway-model-name, value: premium-model}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: premium}}]
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: cheap}}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: cheap, namespace: default}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {cheap}}}}}
  policies: {{auth: {{secretRef: {{name: cheap-key}}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: premium, namespace: default}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {premium}}}}}
  policies: {{auth: {{secretRef: {{name: premium-key}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cheap-key, namespace: default}}
stringData: {{Authorization: {cheap_key}}}
"""

PREMIUM_SECRET = f"""
apiVersion: v1
kind: Secret
metadata: {{name: premium-key, namespace: default}}
stringData:
  Authorization: {PREMIUM_KEY}
"""


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeProviderThread, FakeProviderThread]]:
    cheap = FakeProviderThread(name="cheap").start()
    premium = FakeProviderThread(name="premium").start()
    yield cheap, premium
    cheap.stop()
    premium.stop()


@pytest.fixture(scope="module")
def gateway(providers: tuple[FakeProviderThread, FakeProviderThread]) -> Iterator[GatewayProcess]:
    """Envoy at `info`, the most verbose level `llmgw run` allows without the unsafe flag."""
    cheap, premium = providers
    gw = GatewayProcess(workers=1, args=["--envoy-log-level", "info", "--max-body-bytes", "65536"])
    gw.write(
        "gw.yaml",
        TWO_BACKENDS.format(port=gw.port, cheap=cheap.port, premium=premium.port, cheap_key=CHEAP_KEY),
    )
    gw.write("premium-secret.yaml", PREMIUM_SECRET)
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _chat(gw: GatewayProcess, model: str, **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=20)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("method", "path", "content", "ctype"),
    [
        ("GET", "/v1/files", None, None),
        ("POST", "/v1/files", b"not json at all", "text/plain"),
        ("POST", "/v1/audio/transcriptions", b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        ("DELETE", "/v1/files/f-1", None, None),
    ],
)
def test_client_cannot_pick_a_backend_by_header(
    gateway: GatewayProcess,
    providers: tuple[FakeProviderThread, FakeProviderThread],
    method: str,
    path: str,
    content: bytes | None,
    ctype: str | None,
) -> None:
    cheap, premium = providers
    cheap.clear()
    premium.clear()
    headers = {"x-gateway-model-name": "premium-model"}
    if ctype:
        headers["content-type"] = ctype
    resp = httpx.request(method, gateway.url + path, content=content, headers=headers, timeout=20)
    # No operation the gateway knows: answered 404 in OpenAI's schema, and no key is spent at all
    # (the operation allowlist; before it, these went to the default backend with its key).
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_operation"
    assert premium.requests == []  # the premium key was not spent
    assert cheap.requests == []  # nor the default backend's


@pytest.mark.integration
def test_model_header_comes_from_the_body_only(
    gateway: GatewayProcess, providers: tuple[FakeProviderThread, FakeProviderThread]
) -> None:
    cheap, premium = providers
    cheap.clear()
    premium.clear()
    # A client header naming another model than its body: the body wins.
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "cheap-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-gateway-model-name": "premium-model"},
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    assert premium.requests == [] and len(cheap.requests) == 1
    # The gateway's own header still routes on the body's model.
    assert _chat(gateway, "premium-model").status_code == 200
    [rec] = premium.requests
    assert rec.headers["authorization"] == f"Bearer {PREMIUM_KEY}"
    # Stripped before routing on every route: it is an HCM setting, not a route's.
    dump = json.loads(gateway.config_dump())
    hcms = [
        f["typed_config"]
        for c in dump["configs"]
        if c["@type"].endswith("ListenersConfigDump")
        for lst in c.get("dynamic_listeners", [])
        for chain in lst["active_state"]["listener"]["filter_chains"]
        for f in chain["filters"]
    ]
    assert hcms and all(
        {"remove": "x-gateway-model-name"} in h["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
        for h in hcms
    )


@pytest.mark.integration
def test_admin_is_a_private_unix_socket(gateway: GatewayProcess) -> None:
    mode = stat.S_IMODE(gateway.admin_socket.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(gateway.run_dir.stat().st_mode) == 0o700
    bootstrap = yaml.safe_load((gateway.run_dir / "envoy.yaml").read_text())
    assert set(bootstrap["admin"]["address"]) == {"pipe"}  # no TCP port at all
    assert gateway.admin("/ready").text.strip() == "LIVE"
    dump = gateway.config_dump()
    assert "CANARY" not in dump  # and no key in Envoy's config


@pytest.mark.integration
def test_canary_keys_never_reach_the_log(
    gateway: GatewayProcess, providers: tuple[FakeProviderThread, FakeProviderThread]
) -> None:
    cheap, premium = providers
    cheap.clear()
    premium.clear()
    # Traffic of every kind: JSON, a stream, an upstream error, no route, too large, a client key.
    assert _chat(gateway, "premium-model").status_code == 200
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "premium-model", "stream": True, "messages": [{"role": "user", "content": "s"}]},
        timeout=20,
    ) as resp:
        assert resp.status_code == 200
        resp.read()
    premium.set_behaviour(error_status=500, error_count=1)
    assert _chat(gateway, "premium-model").status_code == 500
    premium.reset_behaviour()
    assert httpx.get(gateway.url + "/nowhere", timeout=10).status_code == 404
    assert _chat(gateway, "premium-model", pad="x" * 100_000).status_code == 413
    httpx.get(gateway.url + "/v1/models", headers={"authorization": "Bearer client-key"}, timeout=10)
    assert premium.requests and all(r.headers["authorization"] == f"Bearer {PREMIUM_KEY}" for r in premium.requests)

    # Reloads that fail on the Secret: a YAML error on the key's line, then a key with a line break.
    before = gateway.log().count("configuration change rejected")
    gateway.write("premium-secret.yaml", PREMIUM_SECRET.replace(PREMIUM_KEY, f'"{PREMIUM_KEY}'))
    wait_until(lambda: gateway.log().count("configuration change rejected") > before, what="the first rejection")
    gateway.write("premium-secret.yaml", PREMIUM_SECRET.replace(PREMIUM_KEY, f'"{PREMIUM_KEY}\\nsecond-line"'))
    wait_until(lambda: gateway.log().count("configuration change rejected") > before + 1, what="the second rejection")
    log = gateway.log()
    assert "invalid YAML" in log and "contains a line break" in log
    gateway.write("premium-secret.yaml", PREMIUM_SECRET)
    assert _chat(gateway, "premium-model").status_code == 200  # the last good config served throughout

    log = gateway.log()
    assert '"status":' in log or "status" in log  # the access log is there, so the log was captured
    for secret in (PREMIUM_KEY, CHEAP_KEY, "CANARY"):
        assert secret not in log, f"{secret} in the gateway log"


def test_debug_log_levels_need_the_unsafe_flag(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    for level in ("debug", "trace"):
        result = _llmgw("run", "-f", str(tmp_path), "--envoy-log-level", level)
        assert result.returncode == 2
        assert "API keys" in result.stderr and "--unsafe-envoy-debug-logs" in result.stderr
