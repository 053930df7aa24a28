"""`traffic.rateLimit` of a policy (agentgateway's `local` / `global` limits) -> the route policy's limit part.

One entry point, `parse_rate_limit`, called by `policies.py`; the limits work
owns this module. Until limits land, the field is reported, never dropped.
"""

from __future__ import annotations

from typing import Any

from controlplane.ir import RoutePolicyIR
from controlplane.resources import Problem, Resource


def parse_rate_limit(raw: Any, *, policy: Resource, fld: str) -> tuple[RoutePolicyIR, list[Problem]]:
    """The partial route policy `traffic.rateLimit` sets (overlaid on the rest by the caller), and problems."""
    del raw
    return RoutePolicyIR(), [Problem(policy.file, policy.ref, fld, "is not supported by llmgw yet", "Unsupported")]
