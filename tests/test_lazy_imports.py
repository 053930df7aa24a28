"""What the supervisor and the workers load at start: heavy modules nobody uses stay out.

Why: every module a process imports stays in its RSS for its life (issue 17's target is
extproc workers + control plane < 180 MB). `cel.cli` (a REPL: prompt_toolkit, rich) cost
~12 MiB per process, aiohttp ~10 MiB per worker without remote guards, and the CLI used to
import the whole worker and the fake provider's app just to register two subcommands.
Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def loaded_after(code: str, *modules: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_cli_parser_loads_neither_the_worker_nor_the_fake_providers_app() -> None:
    code = "from controlplane.cli import build_parser\nbuild_parser()"
    assert loaded_after(code, "extproc.worker", "extproc.server", "fakeprovider.app", "prompt_toolkit") == []


def test_a_worker_loads_no_repl_and_no_http_client_until_a_remote_guard_runs() -> None:
    assert loaded_after("import extproc.worker", "prompt_toolkit", "rich", "aiohttp") == []


def test_cel_still_evaluates_without_its_cli() -> None:
    code = "from extproc.policies import cel as c\nassert c.compile_expression('1 + 2').program is not None"
    assert loaded_after(code, "prompt_toolkit") == []
    assert loaded_after("import extproc.policies.cel", "cel") == []  # imported on first use only
