"""`policies.ai` request transforms -> TransformsIR, as agentgateway's `BackendAI` type writes them.

The fields (agentgateway `controller/api/v1alpha1/agentgateway`, `BackendAI`):
`modelAliases` (map, `*` wildcards), `defaults` / `overrides` (lists of `{field, value}`,
any JSON value), `transformations` / `finalTransformations` (lists of `{field,
expression}`, CEL), `prompt` (`prepend` / `append` lists of `{role, content}`) and
`promptCaching` (`cacheSystem`, `cacheMessages`, `cacheTools`, `minTokens`,
`cacheMessageOffset`, with agentgateway's defaults). `routes` (path-suffix route types)
is reported: llmgw names the operation from the path itself. `promptGuard` is another
module's (guards); every other key is left to the caller to report.

One function, `parse`, serves `AIBackend` / `AgentgatewayBackend` `spec.policies.ai`,
each provider's `policies.ai`, and `AgentgatewayPolicy.spec.backend.ai`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controlplane.ir import PromptCachingIR, TransformsIR
from controlplane.resources import header_value_problem
from extproc.policies import cel

# The keys of `policies.ai` this module reads (the caller reports the others it does not know).
FIELDS = frozenset(
    {"modelAliases", "defaults", "overrides", "transformations", "finalTransformations", "prompt", "promptCaching"}
)
MAX_ENTRIES = 64  # agentgateway's MaxItems / MaxProperties
MAX_FIELD_NAME = 256  # agentgateway's ShortString
ROLES = ("system", "developer", "user", "assistant")
_CACHING_FLAGS = {"cacheSystem": "cache_system", "cacheMessages": "cache_messages", "cacheTools": "cache_tools"}
_CACHING_INTS = {"minTokens": "min_tokens", "cacheMessageOffset": "cache_message_offset"}

Fail = Callable[..., None]  # fail(field, message, reason="Invalid")


def parse(ai: Any, *, where: str, fail: Fail) -> TransformsIR | None:
    """The transforms written in one `ai` block (None: none); each problem goes to `fail(field, message, reason)`.

    `where` is the block's field path (`spec.policies.ai`); problems name fields under it.
    """
    if not isinstance(ai, Mapping):
        if ai is not None:
            fail(where, "must be a mapping")
        return None
    if not FIELDS & set(ai):
        return None
    out = TransformsIR(
        aliases=_aliases(ai.get("modelAliases"), f"{where}.modelAliases", fail),
        defaults=_values(ai.get("defaults"), f"{where}.defaults", fail),
        overrides=_values(ai.get("overrides"), f"{where}.overrides", fail),
        transformations=_expressions(ai.get("transformations"), f"{where}.transformations", fail),
        final_transformations=_expressions(ai.get("finalTransformations"), f"{where}.finalTransformations", fail),
        prepend=_messages(ai.get("prompt"), "prepend", f"{where}.prompt", fail),
        append=_messages(ai.get("prompt"), "append", f"{where}.prompt", fail),
        prompt_caching=_caching(ai.get("promptCaching"), f"{where}.promptCaching", fail),
    )
    return out if out != TransformsIR() else None


def _list(value: Any, where: str, fail: Fail) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        fail(where, "must be a non-empty list")
        return []
    if len(value) > MAX_ENTRIES:
        fail(where, f"has {len(value)} entries; at most {MAX_ENTRIES} are allowed")
        return []
    return value


def _field_name(item: Mapping[str, Any], where: str, seen: set[str], fail: Fail) -> str | None:
    name = item.get("field")
    if not isinstance(name, str) or not name or len(name) > MAX_FIELD_NAME:
        fail(f"{where}.field", f"must be a body field name of 1-{MAX_FIELD_NAME} characters")
        return None
    if name in seen:
        fail(f"{where}.field", f"{name!r} is listed twice")
        return None
    seen.add(name)
    return name


def _unknown(item: Mapping[str, Any], where: str, known: set[str], fail: Fail) -> None:
    for key in item:
        if key not in known:
            fail(f"{where}.{key}", "is not supported by llmgw", "Unsupported")


def _aliases(value: Any, where: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        fail(where, "must be a mapping of model name (or `*` pattern) to model")
        return ()
    if len(value) > MAX_ENTRIES:
        fail(where, f"has {len(value)} entries; at most {MAX_ENTRIES} are allowed")
        return ()
    out = []
    for alias, target in value.items():
        if not isinstance(alias, str) or not alias or not isinstance(target, str) or not target:
            fail(f"{where}.{alias}", "must map a non-empty model name to a non-empty model name")
            continue
        if bad := header_value_problem(target):
            fail(f"{where}.{alias}", f"cannot be routed on (x-gateway-model-name): it {bad}")
            continue
        if alias.strip("*") == "":
            fail(f"{where}.{alias}", "matches every model; name the models it is for (e.g. `gpt-*`)")
            continue
        out.append((alias, target))
    return tuple(sorted(out))


def _values(value: Any, where: str, fail: Fail) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(value, where, fail)):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            fail(at, "must be a mapping with `field` and `value`")
            continue
        _unknown(item, at, {"field", "value"}, fail)
        name = _field_name(item, at, seen, fail)
        if "value" not in item:
            fail(f"{at}.value", "is required (any JSON value)")
            continue
        if name is not None:
            out.append((name, item["value"]))
    return tuple(out)


def _expressions(value: Any, where: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(value, where, fail)):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            fail(at, "must be a mapping with `field` and `expression`")
            continue
        _unknown(item, at, {"field", "expression"}, fail)
        name = _field_name(item, at, seen, fail)
        source = item.get("expression")
        if not isinstance(source, str) or not source.strip():
            fail(f"{at}.expression", "must be a CEL expression (a non-empty string)")
            continue
        try:
            cel.compile_expression(source)
        except cel.CelProblem as exc:
            fail(f"{at}.expression", str(exc), "Unsupported" if "does not provide" in str(exc) else "Invalid")
            continue
        if name is not None:
            out.append((name, source))
    return tuple(out)


def _messages(prompt: Any, which: str, where: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    if prompt is None:
        return ()
    if not isinstance(prompt, Mapping):
        if which == "prepend":  # report once
            fail(where, "must be a mapping with `prepend` and/or `append`")
        return ()
    if which == "prepend":
        _unknown(prompt, where, {"prepend", "append"}, fail)
    out = []
    for i, item in enumerate(_list(prompt.get(which), f"{where}.{which}", fail)):
        at = f"{where}.{which}[{i}]"
        if not isinstance(item, Mapping):
            fail(at, "must be a mapping with `role` and `content`")
            continue
        _unknown(item, at, {"role", "content"}, fail)
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or role.lower() not in ROLES:
            fail(f"{at}.role", f"must be one of {', '.join(r.upper() for r in ROLES)} (any case), got {role!r}")
            continue
        if not isinstance(content, str) or not content:
            fail(f"{at}.content", "must be a non-empty string")
            continue
        out.append((role.lower(), content))
    return tuple(out)


def _caching(value: Any, where: str, fail: Fail) -> PromptCachingIR | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        fail(where, "must be a mapping")
        return None
    _unknown(value, where, set(_CACHING_FLAGS) | set(_CACHING_INTS), fail)
    args: dict[str, Any] = {}
    for key, attr in _CACHING_FLAGS.items():
        if key in value:
            if not isinstance(value[key], bool):
                fail(f"{where}.{key}", f"must be true or false, got {value[key]!r}")
                continue
            args[attr] = value[key]
    for key, attr in _CACHING_INTS.items():
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                fail(f"{where}.{key}", f"must be an integer >= 0, got {number!r}")
                continue
            args[attr] = number
    return PromptCachingIR(**args)


def gateway_aliases(tables: list[tuple[tuple[str, str], ...]]) -> tuple[tuple[str, str], ...]:
    """The aliases a gateway resolves before routing: those its backends agree on.

    An alias two reachable backends map to different models is left to the backend the
    route picks (its attempt stage resolves it), so it is not in the gateway's table.
    """
    targets: dict[str, set[str]] = {}
    for table in tables:
        for alias, target in table:
            targets.setdefault(alias, set()).add(target)
    return tuple(sorted((alias, next(iter(t))) for alias, t in targets.items() if len(t) == 1))
