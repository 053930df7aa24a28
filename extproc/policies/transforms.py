"""`policies.ai` request transforms: model aliases, field mutations, prompt enrichment, cache markers.

Pure functions on the request body the stage has already parsed (it is parsed once;
the caller re-encodes it once, after translation). What the gateway does not
understand in the body is left as it is (DESIGN convention 4): only the named
fields, the `messages`/`system` lists and the chosen blocks' cache markers change.

Order, per request (the transform step of authenticate, limit, guard, transform, translate):

1. **alias**: the client's `model` through `modelAliases` (an exact name first, then
   `*` patterns, the longest pattern first, as agentgateway does); the router stage
   resolved the gateway-wide aliases already for routing (`resolve_alias`).
2. **field mutations**, as agentgateway applies them: every `transformations` CEL
   expression is evaluated against the body as it is at this point; then `overrides`
   are set; then the expressions' results are set (a failed expression removes its field,
   as in agentgateway); then `defaults` fill the fields still absent.
3. **prompt enrichment** (`prompt.prepend` / `prompt.append`) on chat completions and
   Anthropic messages (and their token counting): `system`/`developer` entries go into
   Anthropic's top-level `system`.
4. after translation, in the provider's schema (`finalize`): **cache markers**
   (`promptCaching`) for Anthropic and Bedrock Converse, then `finalTransformations`.

Cache markers: Anthropic gets `cache_control: {"type": "ephemeral"}` on the last tool,
the last system block and the last block of the message before the current turn
(moved back by `cacheMessageOffset`); Bedrock gets a `{"cachePoint": {"type": "default"}}`
block in the same three places. Both cache the prompt as a prefix in the order tools,
system, messages, so a marker is added only when the prefix it closes is estimated at
`minTokens` or more. The estimate is characters / 4 (OpenAI's rule of thumb; agentgateway
uses words x 1.3): `len()` of each text, no tokenizer, no split. A request that already
carries a marker of its own is left alone (the client chose; Anthropic allows only four).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extproc.contract import PromptCachingConfig, ProviderConfig, TransformsConfig
from extproc.policies import cel

ANTHROPIC_CACHE_CONTROL = {"type": "ephemeral"}
# Provider APIs (extproc.providers `api()`) whose request schema takes cache markers.
ANTHROPIC_APIS = frozenset({"anthropic", "vertex_anthropic"})
BEDROCK_APIS = frozenset({"bedrock"})
CHARS_PER_TOKEN = 4
# Chat bodies with `messages`; token counting too, so its count is that of the enriched request.
_ENRICHED_OPS = frozenset({"chat_completions", "messages", "count_tokens"})


@dataclass(frozen=True)
class Aliases:
    """modelAliases compiled: exact names, then patterns longest first."""

    exact: Mapping[str, str]
    patterns: tuple[tuple[re.Pattern[str], str], ...]

    @classmethod
    def of(cls, table: Mapping[str, str]) -> Aliases:
        patterns = sorted(((k, v) for k, v in table.items() if "*" in k), key=lambda kv: -len(kv[0]))
        return cls(
            exact={k: v for k, v in table.items() if "*" not in k},
            patterns=tuple((wildcard(k), v) for k, v in patterns),
        )

    def resolve(self, model: str) -> str | None:
        target = self.exact.get(model)
        if target is not None:
            return target
        for pattern, target in self.patterns:
            if pattern.fullmatch(model):
                return target
        return None


def wildcard(pattern: str) -> re.Pattern[str]:
    """A modelAliases key with `*` (any run of characters, possibly empty); everything else literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


@dataclass(frozen=True)
class Plan:
    """One provider's transforms, compiled once per config (CEL programs, alias patterns)."""

    aliases: Aliases
    defaults: Mapping[str, Any]
    overrides: Mapping[str, Any]
    transformations: tuple[tuple[str, cel.Expression], ...]
    final_transformations: tuple[tuple[str, cel.Expression], ...]
    prepend: tuple[tuple[str, str], ...]
    append: tuple[tuple[str, str], ...]
    caching: PromptCachingConfig | None

    @property
    def reads_request(self) -> bool:
        return any(e.reads_request for _, e in (*self.transformations, *self.final_transformations))


_PLANS: dict[int, tuple[TransformsConfig, Plan]] = {}
_MAX_PLANS = 1024


def plan_for(provider: ProviderConfig) -> Plan | None:
    """The compiled plan of `provider`'s transforms (None: it has none), cached per config object."""
    tc = provider.transforms
    if tc is None:
        return None
    hit = _PLANS.get(id(tc))
    if hit is not None and hit[0] is tc:
        return hit[1]
    plan = compile_plan(tc)
    if len(_PLANS) >= _MAX_PLANS:  # configs replaced many times: start over rather than grow
        _PLANS.clear()
    _PLANS[id(tc)] = (tc, plan)
    return plan


def compile_plan(tc: TransformsConfig) -> Plan:
    """Compile `tc`; an expression that no longer compiles (the control plane checked it) is skipped."""

    def compiled(table: Mapping[str, str]) -> tuple[tuple[str, cel.Expression], ...]:
        out = []
        for name, source in table.items():
            try:
                out.append((name, cel.compile_expression(source)))
            except cel.CelProblem:
                continue
        return tuple(out)

    return Plan(
        aliases=Aliases.of(tc.aliases),
        defaults=dict(tc.defaults),
        overrides=dict(tc.overrides),
        transformations=compiled(tc.transformations),
        final_transformations=compiled(tc.final_transformations),
        prepend=tuple((m["role"], m["content"]) for m in tc.prepend),
        append=tuple((m["role"], m["content"]) for m in tc.append),
        caching=tc.prompt_caching,
    )


def resolve_alias(model: str, table: Mapping[str, str]) -> str | None:
    """The gateway-wide alias (the router stage, before routing); compiled patterns are cached."""
    if not table:
        return None
    key = id(table)
    hit = _GATEWAY_ALIASES.get(key)
    if hit is None or hit[0] is not table:
        if len(_GATEWAY_ALIASES) >= _MAX_PLANS:
            _GATEWAY_ALIASES.clear()
        hit = _GATEWAY_ALIASES[key] = (table, Aliases.of(table))
    return hit[1].resolve(model)


_GATEWAY_ALIASES: dict[int, tuple[Mapping[str, str], Aliases]] = {}


def request_view(headers: Mapping[str, str]) -> dict[str, Any]:
    """The CEL `request` variable from the request's pseudo-headers and headers."""
    path_and_query = headers.get(":path", "")
    return {
        "method": headers.get(":method", ""),
        "path": path_and_query.split("?", 1)[0],
        "pathAndQuery": path_and_query,
        "host": headers.get(":authority", ""),
        "scheme": headers.get(":scheme", ""),
        "headers": {k: v for k, v in headers.items() if not k.startswith(":")},
    }


def apply_request(
    body: dict[str, Any],
    plan: Plan,
    *,
    op: str,
    client_api: str,
    routed_model: str | None = None,
    request: Mapping[str, Any] | None = None,
) -> bool:
    """Steps 1-3 on the client's body, in place; True when anything changed.

    `routed_model`: the model the router stage routed on (x-gateway-model-name) when it
    differs from the body's, i.e. the gateway-wide alias it resolved.
    """
    changed = False
    model = body.get("model")
    if isinstance(model, str) and model:
        target = plan.aliases.resolve(model) or (routed_model if routed_model and routed_model != model else None)
        if target is not None and target != model:
            body["model"] = target
            changed = True
    changed |= _mutate(body, plan.transformations, plan, request)
    if op in _ENRICHED_OPS and (plan.prepend or plan.append):
        changed |= _enrich(body, plan, anthropic=client_api == "anthropic")
    return changed


def finalize(body: dict[str, Any], plan: Plan, *, provider_api: str, request: Mapping[str, Any] | None = None) -> bool:
    """Step 4 on the body in the provider's schema, in place; True when anything changed."""
    changed = False
    if plan.caching is not None:
        if provider_api in ANTHROPIC_APIS:
            changed |= mark_anthropic(body, plan.caching)
        elif provider_api in BEDROCK_APIS:
            changed |= mark_converse(body, plan.caching)
    if plan.final_transformations:
        changed |= _mutate(body, plan.final_transformations, None, request)
    return changed


def _mutate(
    body: dict[str, Any],
    expressions: tuple[tuple[str, cel.Expression], ...],
    plan: Plan | None,
    request: Mapping[str, Any] | None,
) -> bool:
    """Overrides, CEL results, defaults (agentgateway's apply_request_body_mutations)."""
    results: list[tuple[str, bool, Any]] = []
    if expressions:
        exprs = [e for _, e in expressions]
        reads_request = any(e.reads_request for e in exprs)
        ctx = cel.context(
            body=body,
            request=request if reads_request else None,
            fields=cel.body_fields(exprs),
            request_fields=cel.request_fields(exprs),
        )
        results = [(name, *cel.evaluate(expr, ctx)) for name, expr in expressions]
    changed = False
    if plan is not None:
        for name, value in plan.overrides.items():
            body[name] = value
            changed = True
    for name, ok, value in results:
        if ok:
            body[name] = value
            changed = True
        elif name in body:
            del body[name]
            changed = True
    if plan is not None:
        for name, value in plan.defaults.items():
            if name not in body:
                body[name] = value
                changed = True
    return changed


def _enrich(body: dict[str, Any], plan: Plan, *, anthropic: bool) -> bool:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False  # not a chat body the gateway understands: the translation answers the 400
    if not anthropic:
        body["messages"] = (
            [_message(r, c) for r, c in plan.prepend] + messages + [_message(r, c) for r, c in plan.append]
        )
        return True
    before = [_message(r, c) for r, c in plan.prepend if r not in _SYSTEM_ROLES]
    after = [_message(r, c) for r, c in plan.append if r not in _SYSTEM_ROLES]
    body["messages"] = before + messages + after
    sys_before = [c for r, c in plan.prepend if r in _SYSTEM_ROLES]
    sys_after = [c for r, c in plan.append if r in _SYSTEM_ROLES]
    if sys_before or sys_after:
        body["system"] = _anthropic_system(body.get("system"), sys_before, sys_after)
    return True


_SYSTEM_ROLES = frozenset({"system", "developer"})


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def _anthropic_system(system: Any, before: list[str], after: list[str]) -> Any:
    """Anthropic's `system` (absent, a string or text blocks) with the enrichment texts around it."""
    if isinstance(system, list):
        return [{"type": "text", "text": t} for t in before] + system + [{"type": "text", "text": t} for t in after]
    middle = [system] if isinstance(system, str) and system else []
    return "\n\n".join([*before, *middle, *after])


# --- cache markers ---------------------------------------------------------------------------


def estimate_tokens(value: Any) -> int:
    """Characters / 4 of the text in `value` (strings anywhere in it; keys and numbers ignored)."""
    return _chars(value) // CHARS_PER_TOKEN


def _chars(value: Any, limit: int = 1 << 62) -> int:
    """Characters of the strings in `value`; counting stops once `limit` is reached."""
    if isinstance(value, str):
        return len(value)
    total = 0
    items = value if isinstance(value, list) else value.values() if isinstance(value, dict) else ()
    for v in items:
        total += _chars(v, limit - total)
        if total >= limit:
            break
    return total


class _Prefix:
    """The estimated size of the cached prefix so far, counted only up to what minTokens needs."""

    def __init__(self, min_tokens: int) -> None:
        self.need = min_tokens * CHARS_PER_TOKEN
        self.chars = 0

    def add(self, value: Any) -> bool:
        """Count `value` into the prefix; True when the prefix is now long enough for a marker."""
        if self.chars < self.need:
            self.chars += _chars(value, self.need - self.chars)
        return self.chars >= self.need


def _target_index(messages: list[Any], offset: int) -> int | None:
    """The message closing the cached history: the one before the current turn, `offset` earlier."""
    if len(messages) < 2:
        return None
    return max(0, len(messages) - 2 - offset)


def _has_marker(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_marker(v, key) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list):
        return any(_has_marker(v, key) for v in value if isinstance(v, dict | list))
    return False


def mark_anthropic(body: dict[str, Any], caching: PromptCachingConfig) -> bool:
    """`cache_control` markers on an Anthropic Messages body (tools, system, history), in place."""
    tools, system, messages = body.get("tools"), body.get("system"), body.get("messages")
    if _has_marker([tools, system, messages], "cache_control"):
        return False
    changed = False
    prefix = _Prefix(caching.min_tokens)
    if isinstance(tools, list) and tools and prefix.add(tools) and caching.cache_tools and isinstance(tools[-1], dict):
        tools[-1]["cache_control"] = dict(ANTHROPIC_CACHE_CONTROL)
        changed = True
    if system and prefix.add(system) and caching.cache_system:
        if isinstance(system, str):
            body["system"] = [{"type": "text", "text": system, "cache_control": dict(ANTHROPIC_CACHE_CONTROL)}]
            changed = True
        elif isinstance(system, list) and isinstance(system[-1], dict):
            system[-1]["cache_control"] = dict(ANTHROPIC_CACHE_CONTROL)
            changed = True
    if caching.cache_messages and isinstance(messages, list):
        target = _target_index(messages, caching.cache_message_offset)
        if target is not None and isinstance(messages[target], dict) and prefix.add(messages[: target + 1]):
            changed |= _mark_anthropic_message(messages[target])
    return changed


def _mark_anthropic_message(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if isinstance(content, str) and content:
        message["content"] = [{"type": "text", "text": content, "cache_control": dict(ANTHROPIC_CACHE_CONTROL)}]
        return True
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        # Anthropic refuses cache_control on empty text and on thinking blocks: mark the last other block.
        for block in reversed(content):
            if isinstance(block, dict) and block.get("type") not in ("thinking", "redacted_thinking"):
                if block.get("type") == "text" and not block.get("text"):
                    continue
                block["cache_control"] = dict(ANTHROPIC_CACHE_CONTROL)
                return True
    return False


def mark_converse(body: dict[str, Any], caching: PromptCachingConfig) -> bool:
    """`cachePoint` blocks in a Bedrock Converse body (toolConfig.tools, system, history), in place."""
    tool_config, system, messages = body.get("toolConfig"), body.get("system"), body.get("messages")
    tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
    if _has_marker([tools, system, messages], "cachePoint"):
        return False
    changed = False
    prefix = _Prefix(caching.min_tokens)
    if isinstance(tools, list) and tools and prefix.add(tools) and caching.cache_tools:
        tools.append(_cache_point())
        changed = True
    if isinstance(system, list) and system and prefix.add(system) and caching.cache_system:
        system.append(_cache_point())
        changed = True
    if caching.cache_messages and isinstance(messages, list):
        target = _target_index(messages, caching.cache_message_offset)
        if target is not None and isinstance(messages[target], dict):
            content = messages[target].get("content")
            if isinstance(content, list) and content and prefix.add(messages[: target + 1]):
                content.append(_cache_point())
                changed = True
    return changed


def _cache_point() -> dict[str, Any]:
    return {"cachePoint": {"type": "default"}}
