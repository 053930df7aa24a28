"""Golden files: one comparison, one flag to regenerate them all.

Every golden suite (the pipeline in `tests/golden/`, the Kubernetes plan in
`tests/k8s/golden/`, the translation pairs in `tests/golden_translate/`) turns
an input file into a text or bytes and hands it to `check`, which compares it
with the expected file byte for byte. After an intended change, regenerate and
review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_golden.py   # or any golden test file, or the whole suite

Each suite keeps its own serialization (it is part of its file format); this
module only decides compare-or-write, so the flag and the failure message are
the same everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

FLAG = "LLMGW_UPDATE_GOLDEN"
UPDATE = os.environ.get(FLAG, "") not in ("", "0")
_REPO = Path(__file__).resolve().parent.parent


def check(path: Path, actual: str | bytes) -> None:
    """Compare `actual` with the golden file `path`, or (with LLMGW_UPDATE_GOLDEN=1) write it there."""
    if UPDATE:
        if isinstance(actual, bytes):
            path.write_bytes(actual)
        else:
            path.write_text(actual, encoding="utf-8")
        return
    name = _shown(path)
    if not path.exists():
        pytest.fail(f"golden file {name} is missing; create it with: {regenerate_command()}")
    expected: str | bytes = path.read_bytes() if isinstance(actual, bytes) else path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from what the code produces; if intended: {regenerate_command()}"


def json_text(doc: Any, *, sort_keys: bool = False) -> str:
    """The JSON golden format of the translation suites: two-space indent, UTF-8 as is, final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"


def regenerate_command() -> str:
    """The command that regenerates the running test's golden files (then review the diff)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    test_file = current.split("::", 1)[0] or "tests/"
    return f"{FLAG}=1 pytest {test_file}, then review the diff"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_REPO))
    except ValueError:
        return str(path)
