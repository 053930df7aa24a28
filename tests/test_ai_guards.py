"""`prompt_guard()` as another policy kind will call it, and the guards' trip through the config contract.

The parser takes any context with the resource, its namespace's Secrets and a `fail` (the
AgentgatewayPolicy translation will pass its own); secrets resolve into redacted `AuthIR`s,
travel the config channel, and never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from controlplane.extproc_config import build
from controlplane.gatewayapi.ai_guards import prompt_guard
from controlplane.ir import IR, BackendIR
from controlplane.resources import Problem, Resource
from extproc.contract import ExtprocConfig

SECRET = "sk-moderation-canary-77"


@dataclass
class Ctx:
    res: Resource
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.res.file, self.res.ref, fld, message, reason))


def policy_ctx() -> Ctx:
    res = Resource("agentgateway.dev/v1alpha1", "AgentgatewayPolicy", "guards", "team-a", body={}, file="p.yaml")
    return Ctx(res, secrets={"team-a/mod-key": {"Authorization": f"Bearer {SECRET}"}})


def parse(text: str) -> tuple[Any, list[str]]:
    ctx = policy_ctx()
    guard = prompt_guard(ctx, "spec.backend.ai.promptGuard", yaml.safe_load(text))
    return guard, [f"{p.field}: {p.message}" for p in ctx.problems]


def test_a_policy_kind_gets_the_same_guards() -> None:
    guard, problems = parse(
        """
        request:
          - webhook: {backendRef: {name: hook, port: 9000}}
          - openAIModeration: {policies: {auth: {secretRef: {name: mod-key}}}}
        response:
          - regex: {matches: ["(?i)internal-only"], action: Reject}
            response: {message: "Not for you."}
        """
    )
    assert problems == []
    hook, moderation = guard.request
    assert hook.url == "http://hook.team-a.svc.cluster.local:9000"  # the policy's namespace
    assert moderation.url == "https://api.openai.com:443"
    assert moderation.auth.value == SECRET  # "Bearer " stripped from the default key, as agentgateway does
    assert SECRET not in repr(guard)
    [regex] = guard.response
    assert (regex.action, regex.patterns, regex.message, regex.status) == (
        "Reject",
        ("(?i)internal-only",),
        "Not for you.",
        403,
    )


def test_problems_name_the_field() -> None:
    _, problems = parse(
        """
        request:
          - openAIModeration: {policies: {auth: {secretRef: {name: missing}}, tunnel: {}}}
          - regex: {builtins: [Ssn]}
            scope: []
        response:
          - webhook: {backendRef: {kind: Backend, name: x, port: 1}}
        """
    )
    assert problems == [
        "spec.backend.ai.promptGuard.request[0].openAIModeration.policies.tunnel: is not supported by llmgw",
        "spec.backend.ai.promptGuard.request[0].openAIModeration.policies.auth.secretRef: "
        "Secret team-a/missing has no non-empty key 'Authorization'",
        "spec.backend.ai.promptGuard.request[1].scope: must be a non-empty list of SystemPrompt, Messages, "
        "ToolInput, ToolOutput",
        "spec.backend.ai.promptGuard.response[0].webhook.backendRef.kind: "
        "llmgw calls webhooks by Service (core group) only",
    ]


def test_guards_travel_the_config_channel_and_never_print() -> None:
    guard, problems = parse(
        """
        streaming: Enabled
        request:
          - openAIModeration: {policies: {auth: {secretRef: {name: mod-key}}}, host: 127.0.0.1, port: 8080}
          - webhook: {host: 10.0.0.5, port: 80, forwardHeaderMatches: [{name: X-Team, value: a}], failureMode: FailOpen}
        response:
          - regex: {builtins: [CreditCard, Email]}
        """
    )
    assert problems == []
    config = build(IR(backends=(BackendIR(key="team-a/b", providers=(), prompt_guard=guard),)))
    raw = config.to_json()
    assert SECRET.encode() in raw  # the channel carries it ...
    back = ExtprocConfig.from_json(raw)
    policy = back.guards["team-a/b"]
    assert policy.streaming and [g.kind for g in policy.request] == ["openAIModeration", "webhook"]
    assert policy.request[0].auth is not None and policy.request[0].auth.header_value() == f"Bearer {SECRET}"
    assert policy.request[0].url == "http://127.0.0.1:8080"
    assert policy.request[1].forward_headers[0].name == "x-team" and policy.request[1].failure_mode == "FailOpen"
    assert policy.response[0].builtins == ("CreditCard", "Email")
    assert SECRET not in repr(back) and SECRET not in str(policy)  # ... nothing else shows it


def test_references_stay_in_the_namespace_and_legacy_names_are_reported() -> None:
    _, problems = parse(
        """
        request:
          - webhook: {backendRef: {name: hook, namespace: other, port: 80}}
          - regex: {matches: [{pattern: "x+", name: X}]}
        """
    )
    assert problems == [
        "spec.backend.ai.promptGuard.request[0].webhook.backendRef.namespace: llmgw calls guard webhooks in the "
        "object's own namespace only (no ReferenceGrant for them)",
        "spec.backend.ai.promptGuard.request[1].regex.matches[0].name: is not supported by llmgw",
    ]
