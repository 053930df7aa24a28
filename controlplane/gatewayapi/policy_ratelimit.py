"""`traffic.rateLimit` of a policy -> the limits and budgets the router stage enforces.

One entry point for policies.py, `parse_rate_limit` (the partial route
policy `rateLimit` sets); `parse_limits` is its pure core.

agentgateway's `local` entries (exactly one of `requests` / `tokens`, a
`unit` of Seconds, Minutes or Hours, an optional `burst`) are enforced by
the extproc against the shared store (extproc/policies/limits.py): unlike
agentgateway's per-proxy buckets, exact across workers and, with Redis,
across replicas. Our own kind (`AIPolicy`, llmgw.dev) adds to an entry:
- `usd`: a budget in US dollars instead of requests or tokens,
- `unit` Days and Months (calendar months, UTC),
- `key`: the descriptor the limit is kept per: identity fields (`user`,
  `team`, `tenant`, `key_id`, a label name), `route`, `model`, `backend`,
  `header:<name>`. Without one, the limit is one bucket per policy entry.
Those extensions in an `AgentgatewayPolicy` are problems, as is `global`
until Envoy's rate-limit filter is wired (controlplane/xds), and
`conditional` (CEL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.ir import LimitRuleIR, RateLimitIR, RoutePolicyIR
from controlplane.resources import Problem, Resource

LLMGW_API = "llmgw.dev/v1alpha1"
UNITS = {"Seconds": "second", "Minutes": "minute", "Hours": "hour"}
LLMGW_UNITS = {**UNITS, "Days": "day", "Months": "month"}
IDENTITY_KEYS = ("user", "team", "tenant", "key_id", "source")
REQUEST_KEYS = ("route", "model", "backend")
UNSUPPORTED = "Unsupported"


def parse_rate_limit(raw: Any, *, policy: Resource, fld: str) -> tuple[RoutePolicyIR, list[Problem]]:
    """The partial route policy `traffic.rateLimit` sets (overlaid on the rest by the caller), and problems."""
    limits, problems = parse_limits(raw, policy=policy, fld=fld)
    return RoutePolicyIR(rate_limit=limits), problems


def parse_limits(raw: Any, *, policy: Resource, fld: str) -> tuple[RateLimitIR | None, list[Problem]]:
    """The limits of `traffic.rateLimit` (None when nothing in it is enforceable) and problems."""
    problems: list[Problem] = []

    def fail(path: str, message: str, reason: str = "Invalid") -> None:
        problems.append(Problem(policy.file, policy.ref, path, message, reason))

    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping")
        return None, problems
    ours = policy.api_version == LLMGW_API
    for key in raw:
        if key == "global":
            fail(
                f"{fld}.global",
                "is not supported by llmgw yet (use local limits, shared through the store)",
                UNSUPPORTED,
            )
        elif key == "conditional":
            fail(f"{fld}.conditional", "is not supported by llmgw (CEL conditions)", UNSUPPORTED)
        elif key != "local":
            fail(f"{fld}.{key}", "is not a field of rateLimit")
    entries = raw.get("local")
    if entries is None:
        return None, problems
    if not isinstance(entries, list) or not entries:
        fail(f"{fld}.local", "must be a non-empty list")
        return None, problems
    rules = []
    for i, entry in enumerate(entries):
        rule = _entry(entry, path=f"{fld}.local[{i}]", rid=f"{policy.key}/local/{i}", ours=ours, fail=fail)
        if rule is not None:
            rules.append(rule)
    return (RateLimitIR(local=tuple(rules)) if rules else None), problems


def _entry(entry: Any, *, path: str, rid: str, ours: bool, fail: Any) -> LimitRuleIR | None:
    if not isinstance(entry, Mapping):
        fail(path, "must be a mapping")
        return None
    known = {"requests", "tokens", "unit", "burst"} | ({"usd", "key"} if ours else set())
    for key in entry:
        if key not in known:
            if key in ("usd", "key"):
                fail(f"{path}.{key}", "is an llmgw extension: use kind AIPolicy (llmgw.dev/v1alpha1) for it")
            else:
                fail(f"{path}.{key}", "is not a field of a local rate limit")
    amounts = [k for k in ("requests", "tokens", "usd") if k in entry]
    if len(amounts) != 1:
        fail(path, "must set exactly one of requests, tokens" + (", usd" if ours else ""))
        return None
    kind = amounts[0]
    amount = entry[kind]
    if kind == "usd":
        value = _positive_number(amount)
    else:
        value = float(amount) if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 1 else None
    if value is None:
        fail(f"{path}.{kind}", "must be a positive number" if kind == "usd" else "must be an integer of at least 1")
        return None
    units = LLMGW_UNITS if ours else UNITS
    raw_unit = entry.get("unit")
    unit = units.get(raw_unit) if isinstance(raw_unit, str) else None
    if unit is None:
        fail(f"{path}.unit", f"must be one of {', '.join(units)}")
        return None
    burst = entry.get("burst", 0)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        fail(f"{path}.burst", "must be an integer of at least 0")
        return None
    keys = _keys(entry.get("key", ()), path=f"{path}.key", fail=fail)
    if keys is None:
        return None
    return LimitRuleIR(id=rid, kind=kind, amount=value, unit=unit, burst=float(burst), keys=keys)


def _keys(raw: Any, *, path: str, fail: Any) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple) or not all(isinstance(k, str) and k for k in raw):
        fail(path, "must be a list of descriptor names (user, team, tenant, key_id, route, model, header:<name>)")
        return None
    out = []
    for key in raw:
        if key.startswith("header:"):
            name = key[7:].strip().lower()
            if not name:
                fail(path, f"{key!r} names no header")
                return None
            out.append("header:" + name)
        else:
            out.append(key)  # identity field, a label of the identity, or a request key
    return tuple(dict.fromkeys(out))


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 and number == number and number != float("inf") else None
