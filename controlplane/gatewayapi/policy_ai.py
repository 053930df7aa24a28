"""`backend.ai` of a policy (prompt guards, aliases, defaults/overrides, prompts, ...) -> the backend policy's AI part.

One entry point, `parse_backend_ai`, called by `policies.py`. It reads the block
with the same parsers as a backend's own `spec.policies.ai` (`ai_guards`,
`ai_transforms`), so `AgentgatewayPolicy.spec.backend.ai` and
`AgentgatewayBackend.spec.policies.ai` mean the same thing. What neither parser
reads is reported, never dropped. The backend's own fields win over the policy's
(agentgateway: a backend's inline policies are the most specific), merged in
`gatewayapi/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.gatewayapi import ai_transforms
from controlplane.gatewayapi.ai_guards import prompt_guard
from controlplane.ir import BackendPolicyIR
from controlplane.resources import Problem, Resource

_GUARD = "promptGuard"


@dataclass
class _Ctx:
    """What the guard parser needs: the policy, its namespace's Secrets, a problem list."""

    res: Resource
    secrets: Mapping[str, Mapping[str, str]]
    problems: list[Problem] = field(default_factory=list)

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.res.file, self.res.ref, fld, message, reason))


def parse_backend_ai(
    raw: Any, *, policy: Resource, fld: str, secrets: Mapping[str, Mapping[str, str]]
) -> tuple[BackendPolicyIR, list[Problem]]:
    """The partial backend policy `backend.ai` sets (overlaid on the rest by the caller), and problems."""
    ctx = _Ctx(policy, secrets)
    if not isinstance(raw, Mapping):
        ctx.fail(fld, "must be a mapping")
        return BackendPolicyIR(), ctx.problems
    transforms = ai_transforms.parse(raw, where=fld, fail=ctx.fail)
    guard = prompt_guard(ctx, f"{fld}.{_GUARD}", raw[_GUARD]) if _GUARD in raw else None
    for key in raw:
        if key not in ai_transforms.FIELDS and key != _GUARD:
            ctx.fail(f"{fld}.{key}", "is not supported by llmgw in a policy", "Unsupported")
    return BackendPolicyIR(transforms=transforms, prompt_guard=guard), ctx.problems
