"""`backend.ai` of a policy (prompt guards, enrichment, defaults/overrides, ...) -> the backend policy's AI part.

One entry point, `parse_backend_ai`, called by `policies.py`; the guard and
transform parsers plug in here. Until then the field is reported, never dropped.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import BackendPolicyIR
from controlplane.resources import Problem, Resource


def parse_backend_ai(raw: Any, *, policy: Resource, fld: str) -> tuple[BackendPolicyIR, list[Problem]]:
    """The partial backend policy `backend.ai` sets (overlaid on the rest by the caller), and problems."""
    del raw
    return BackendPolicyIR(), [Problem(policy.file, policy.ref, fld, "is not supported by llmgw yet", "Unsupported")]
