"""Golden tests of the pure pipeline: manifests -> IR (+ problems) -> Envoy resources.

For every ``tests/golden/<case>.in.yaml`` the test runs ``load_files``, the Gateway
API translation (``controlplane.gatewayapi.translate``) and the xDS translation
(``controlplane.xds.translate.translate``), then compares with two golden files:

- ``<case>.ir.yaml``: the IR (``dataclasses.asdict``) and the problems as strings, each
  followed by its condition reason in brackets.
  Credentials are redacted (``AuthIR.value`` becomes ``<redacted>``).
- ``<case>.envoy.yaml``: the Envoy resources as JSON-shaped dicts. They are also
  parsed into protos (``to_protos``), which proves Envoy knows every field name.

Regenerate every golden file after an intended change, then review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_golden.py

To add a case, write ``tests/golden/<case>.in.yaml`` and run the command above.
The inputs use ``${TEST_KEY}`` (set to ``sk-from-env`` here) and inline keys; no
golden file may contain any of those secret values.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.gatewayapi import translate
from controlplane.ir import IR
from controlplane.resources import Resource, load_files, secret_data
from controlplane.xds.translate import EnvoyResources, to_protos
from controlplane.xds.translate import translate as translate_ir
from tests import golden_files

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
ENVIRON = {"TEST_KEY": "sk-from-env"}
REDACTED = "<redacted>"
PUBLIC_PARAMS = {"region", "mode"}  # auth params that are not secret
PAUSE_ORACLE = ("127.0.0.1", 15021)  # as `llmgw run` and the controller give it (Retry-After pauses)

CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN_DIR.glob("*.in.yaml"))


def _plain(value: Any) -> Any:
    """Tuples to lists (safe_dump knows no tuples), recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump(data: Any) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=True, default_flow_style=False, allow_unicode=True, width=120)


def _redacted_ir(ir: IR) -> dict[str, Any]:
    out = dataclasses.asdict(ir)
    for backend in out["backends"]:
        guards = backend.get("prompt_guard") or {}
        holders = [*backend["providers"], *guards.get("request", ()), *guards.get("response", ())]
        for holder in holders:
            if holder["auth"] is not None:
                holder["auth"]["value"] = REDACTED
                holder["auth"]["params"] = [
                    [k, v if k in PUBLIC_PARAMS else REDACTED] for k, v in holder["auth"]["params"]
                ]
    for plain in out["plain_backends"]:
        if plain["auth"] is not None:
            plain["auth"]["value"] = REDACTED
    return out


def _secret_values(resources: list[Resource], ir: IR) -> set[str]:
    """Every credential the inputs carry: Secret values, inline keys, the environment, resolved auth."""
    values = set(ENVIRON.values())
    for res in resources:
        if res.kind == "Secret":
            data, _ = secret_data(res, environ=ENVIRON)
            values.update(data.values())
            for section in ("data", "stringData"):
                raw = res.body.get(section)
                if isinstance(raw, dict):
                    values.update(str(v) for v in raw.values() if v is not None)
        values.update(_inline_keys(res.body))
    values.update(p.auth.value for b in ir.backends for p in b.providers if p.auth)
    values.update(b.auth.value for b in ir.plain_backends if b.auth)
    guards = [g for b in ir.backends if b.prompt_guard for g in (*b.prompt_guard.request, *b.prompt_guard.response)]
    values.update(g.auth.value for g in guards if g.auth)
    return {v.strip() for v in values if len(v.strip()) >= 6}


def _inline_keys(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        auth = node.get("auth")
        if isinstance(auth, dict) and isinstance(auth.get("key"), str):
            found.add(auth["key"])
        for v in node.values():
            found |= _inline_keys(v)
    elif isinstance(node, list):
        for v in node:
            found |= _inline_keys(v)
    return found


@dataclasses.dataclass
class Rendered:
    ir_text: str
    envoy_text: str
    secrets: set[str]
    envoy: EnvoyResources


@functools.cache
def render(case: str) -> Rendered:
    """Run the pipeline on one case (once per session); file names in problems are the case file's."""
    name = f"{case}.in.yaml"
    resources, load_problems = load_files([GOLDEN_DIR / name])
    resources = [dataclasses.replace(r, file=name) for r in resources]
    load_problems = [dataclasses.replace(p, file=name) for p in load_problems]
    translation = translate(resources, environ=ENVIRON, listen_address="0.0.0.0")
    envoy = translate_ir(translation.ir, pause_oracle=PAUSE_ORACLE)
    problems = [f"{p} [{p.reason}]" for p in [*load_problems, *translation.problems]]
    ir_text = _dump({"ir": _redacted_ir(translation.ir), "problems": problems})
    envoy_text = _dump(dataclasses.asdict(envoy))
    return Rendered(ir_text, envoy_text, _secret_values(resources, translation.ir), envoy)


def test_cases_exist() -> None:
    assert CASES, f"no golden cases in {GOLDEN_DIR}"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    rendered = render(case)
    to_protos(rendered.envoy)  # raises json_format.ParseError on a field Envoy does not know
    golden_files.check(GOLDEN_DIR / f"{case}.ir.yaml", rendered.ir_text)
    golden_files.check(GOLDEN_DIR / f"{case}.envoy.yaml", rendered.envoy_text)


@pytest.mark.parametrize("case", CASES)
def test_golden_has_no_secret(case: str) -> None:
    rendered = render(case)
    texts = {"generated IR": rendered.ir_text, "generated Envoy": rendered.envoy_text}
    for suffix in (".ir.yaml", ".envoy.yaml"):
        path = GOLDEN_DIR / f"{case}{suffix}"
        if path.exists():
            texts[path.name] = path.read_text(encoding="utf-8")
    for secret in sorted(rendered.secrets):
        for where, text in texts.items():
            assert secret not in text, f"{where} contains a secret value from {case}.in.yaml"


def test_redaction_sees_secrets() -> None:
    """The secret check above is not vacuous: the providers case resolves several credentials."""
    rendered = render("providers")
    assert {"sk-from-env", "sk-inline-provider-key"} <= rendered.secrets
    assert REDACTED in rendered.ir_text


def test_no_orphan_golden_files() -> None:
    orphans = [
        p.name
        for p in GOLDEN_DIR.glob("*.yaml")
        if not p.name.endswith(".in.yaml") and p.name.rsplit(".", 2)[0] not in CASES
    ]
    assert not orphans, f"golden files without a <case>.in.yaml: {orphans}"
