"""Secrets never print: the repr/str of a config holding every kind of credential shows none of them.

Log lines, exceptions and validation messages format objects with repr/str;
only the config channel's JSON may carry a secret.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controlplane.compile import compile_paths
from extproc.contract import AuthConfig, ExtprocConfig, ProviderConfig

CANARIES = ("sk-canary-value-1", "aws-secret-canary-2", "client-secret-canary-3", "session-canary-4")


def _config() -> ExtprocConfig:
    providers = {
        "ns/a/openai": ProviderConfig(
            id="ns/a/openai",
            backend="ns/a",
            kind="openai",
            host="api.openai.com",
            auth=AuthConfig(value=CANARIES[0], source="secret ns/openai-key"),
        ),
        "ns/b/bedrock": ProviderConfig(
            id="ns/b/bedrock",
            backend="ns/b",
            kind="bedrock",
            host="bedrock-runtime.us-east-1.amazonaws.com",
            auth=AuthConfig(
                kind="aws",
                params={"accessKey": "AKIA", "secretKey": CANARIES[1], "sessionToken": CANARIES[3]},
            ),
        ),
        "ns/c/azure": ProviderConfig(
            id="ns/c/azure",
            backend="ns/c",
            kind="azureopenai",
            host="res.openai.azure.com",
            auth=AuthConfig(kind="azure", params={"clientID": "id", "tenantID": "t", "clientSecret": CANARIES[2]}),
        ),
    }
    return ExtprocConfig(version="v1", providers=providers)


@pytest.mark.parametrize("render", [repr, str, lambda c: f"{c}", lambda c: f"{c!r}"])
def test_config_renders_without_secrets(render) -> None:  # type: ignore[no-untyped-def]
    text = render(_config())
    assert "ns/a/openai" in text  # the rest is still there
    for canary in CANARIES:
        assert canary not in text


def test_logging_a_config_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("llmgw.test").debug("config %s, auth %r", _config(), _config().providers["ns/a/openai"].auth)
    for canary in CANARIES:
        assert canary not in caplog.text


def test_the_channel_still_carries_the_secret() -> None:
    # The config channel is the one place the value travels (a local Unix socket to the workers).
    decoded = ExtprocConfig.from_json(_config().to_json())
    auth = decoded.providers["ns/a/openai"].auth
    assert auth is not None and auth.header_value() == f"Bearer {CANARIES[0]}"


def test_compiled_ir_renders_without_secrets(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(
        f"""
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: a, namespace: ns}}
spec:
  ai: {{provider: {{openai: {{}}}}}}
  policies: {{auth: {{secretRef: {{name: k}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{Authorization: {CANARIES[0]}}}
"""
    )
    compiled = compile_paths([tmp_path])
    assert compiled.ir is not None and compiled.extproc is not None
    for text in (repr(compiled.ir), repr(compiled.extproc), str(compiled.extproc)):
        assert CANARIES[0] not in text
