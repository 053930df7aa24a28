"""Run a backend's prompt guards over a parsed request or (non-streamed) response body.

Guards run in the order written; the first rejection ends the evaluation; masks rewrite
the body in place so later guards (and translation) see the masked text. The body is
the client's own schema: the request before translation, the response after it.

A remote guard that fails (unreachable, timeout, bad answer) follows its failure mode:
`webhook.failureMode: FailOpen` lets the text through (decision `fail_open`); everything
else fails closed with a 503 `guardrail_unavailable` in the client's schema (what
agentgateway answers for a guard error). All remote guards of one message share one
time budget (`BUDGET_S`), under Envoy's 5 s ext_proc message timeout.

Every decision is counted (`llmgw_guardrail_checks_total`, labels guardrail, phase,
action, route) and returned for the access log; no text is ever logged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extproc import metrics
from extproc.policies.guards import remote
from extproc.policies.guards.config import GuardConfig, HeaderMatchConfig
from extproc.policies.guards.regex import RuleSet, apply, compile_rules
from extproc.policies.guards.texts import Slot, request_slots, response_slots

log = logging.getLogger("llmgw.extproc.guards")
BUDGET_S = 4.5
UNAVAILABLE_MESSAGE = "A guardrail service the gateway must consult is unavailable; the request was not processed."


@dataclass(frozen=True)
class Rejection:
    status: int
    message: str
    code: str  # guardrail_rejected | guardrail_unavailable


@dataclass
class Outcome:
    masked: bool = False
    rejection: Rejection | None = None
    decisions: list[tuple[str, str]] = field(default_factory=list)  # (guardrail, action) in order

    def summary(self) -> str:
        """`kind:action,...` for the access log."""
        return ",".join(f"{k}:{a}" for k, a in self.decisions)


def record(*, guard: str, phase: str, action: str, route: str) -> None:
    _counter(guard, phase, action, route or "").inc()


@functools.lru_cache(maxsize=4096)
def _counter(guard: str, phase: str, action: str, route: str) -> Any:
    """The labelled child, looked up once (prometheus_client's `labels` costs microseconds per call)."""
    return metrics.GUARDRAIL_CHECKS.labels(guard, phase, action, route)


def forwarded(headers: Mapping[str, str], matches: tuple[HeaderMatchConfig, ...]) -> dict[str, str]:
    """The client's headers a webhook's `forwardHeaderMatches` selects (none by default)."""
    out: dict[str, str] = {}
    for m in matches:
        value = headers.get(m.name)
        if value is None:
            continue
        if (m.kind == "Exact" and value == m.value) or (m.kind == "RegularExpression" and _full(m.value, value)):
            out[m.name] = value
    return out


def _full(pattern: str, value: str) -> bool:
    import re2  # on the first regular-expression header match (a worker without one does not map RE2)

    return re2.fullmatch(pattern, value) is not None


def _messages(slots: list[Slot]) -> tuple[list[tuple[str, str]], list[list[Slot]]]:
    """Slots grouped per message: ([(role, joined text)], [slots of each message])."""
    groups: dict[int, list[Slot]] = {}
    for s in slots:
        groups.setdefault(s.message, []).append(s)
    ordered = [groups[k] for k in sorted(groups)]
    return [(g[0].role or "user", "\n".join(s.text for s in g)) for g in ordered], ordered


def _set_messages(groups: list[list[Slot]], texts: list[str]) -> bool:
    changed = False
    for group, text in zip(groups, texts, strict=True):
        if "\n".join(s.text for s in group) == text:
            continue
        changed = True
        group[0].set(text)
        for s in group[1:]:
            s.set("")
    return changed


def _regex(guard: GuardConfig, slots: list[Slot]) -> str:
    rules = compile_rules(guard.builtins, guard.patterns)
    if rules.bounded:
        return _regex_joined(guard, rules, slots)
    action = "allow"
    for s in slots:
        if guard.action == "Reject":
            if rules.matches(s.text):
                return "reject"
            continue
        masked = rules.mask(s.text)
        if masked is not None:
            s.set(masked)
            action = "mask"
    return action


def _regex_joined(guard: GuardConfig, rules: RuleSet, slots: list[Slot]) -> str:
    """Built-ins never match across a newline: scan every text at once, then share the matches out."""
    texts = [s.text for s in slots]
    joined = "\n".join(texts)
    spans = rules.spans(joined)
    if not spans:
        return "allow"
    if guard.action == "Reject":
        return "reject"
    start = 0
    for slot, text in zip(slots, texts, strict=True):
        end = start + len(text)
        mine = [(a - start, b - start, label) for a, b, label in spans if start <= a and b <= end]
        if mine:
            slot.set(apply(text, mine))
        start = end + 1
    return "mask"


async def _remote(guard: GuardConfig, phase: str, slots: list[Slot], headers: Mapping[str, str], timeout: float):
    if guard.kind == "webhook":
        messages, groups = _messages(slots)
        verdict = await remote.webhook(
            guard, phase=phase, messages=messages, headers=forwarded(headers, guard.forward_headers), timeout_s=timeout
        )
        if verdict.action == "mask" and not _set_messages(groups, verdict.replacements):
            verdict = remote.ALLOW
        return verdict
    if guard.kind == "bedrockGuardrails":
        verdict = await remote.bedrock(guard, phase=phase, texts=[s.text for s in slots], timeout_s=timeout)
        if verdict.action == "mask":
            for s, text in zip(slots, verdict.replacements, strict=True):
                s.set(text)
        return verdict
    texts = [t for _, t in _messages(slots)[0]]
    if guard.kind == "openAIModeration":
        return await remote.moderation(guard, texts=texts, timeout_s=timeout)
    if guard.kind == "googleModelArmor":
        return await remote.model_armor(guard, phase=phase, texts=texts, timeout_s=timeout)
    return await remote.azure_content_safety(guard, phase=phase, texts=texts, timeout_s=timeout)


async def run(
    guards: tuple[GuardConfig, ...],
    body: dict[str, Any],
    *,
    op: str,
    phase: str,
    headers: Mapping[str, str],
    route: str,
) -> Outcome:
    """Apply `guards` to `body` (mutated in place when masked)."""
    outcome = Outcome()
    slots = request_slots(body, op) if phase == "request" else response_slots(body, op)
    deadline = time.monotonic() + BUDGET_S
    for guard in guards:
        scoped = [s for s in slots if s.scope in guard.scope] if phase == "request" else slots
        if not scoped:
            action = "allow"
        elif guard.kind == "regex":
            action = _regex(guard, scoped)
            rejection = Rejection(guard.status, guard.message, "guardrail_rejected") if action == "reject" else None
        else:
            rejection = None
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise remote.GuardUnavailable(f"{guard.kind}: no time left in this message's guard budget")
                verdict = await _remote(guard, phase, scoped, headers, min(guard.timeout_s, remaining))
                action = verdict.action
                if action == "reject":
                    rejection = Rejection(
                        verdict.status or guard.status, verdict.message or guard.message, "guardrail_rejected"
                    )
            except remote.GuardUnavailable as exc:
                if guard.kind == "webhook" and guard.failure_mode == "FailOpen":
                    log.warning("%s guard failed open: %s", phase, exc)
                    action = "fail_open"
                else:
                    log.warning("%s guard failed closed: %s", phase, exc)
                    action = "error"
                    rejection = Rejection(503, UNAVAILABLE_MESSAGE, "guardrail_unavailable")
        outcome.decisions.append((guard.kind, action))
        record(guard=guard.kind, phase=phase, action=action, route=route)
        if action == "mask":
            outcome.masked = True
        if action in ("reject", "error"):
            outcome.rejection = rejection
            break
    return outcome
