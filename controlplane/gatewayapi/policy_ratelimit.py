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
Those extensions in an `AgentgatewayPolicy` are problems, as is
`conditional` (CEL).

`global` (Envoy's rate-limit service protocol) goes to Envoy's own ratelimit
filter (controlplane/xds/ratelimit.py): `url: http://host:port` or a
`backendRef` to a Service, `domain`, `failureMode`, and descriptors whose
entries are a string literal or `request.headers["name"]` (other CEL
expressions, `cost` and `limitOverride` are problems). A `Tokens`
descriptor counts one hit when the request starts (so an exhausted limit
refuses it) and the rest of its tokens when the stream ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controlplane.ir import (
    DescriptorEntryIR,
    GlobalDescriptorIR,
    GlobalRateLimitIR,
    LimitRuleIR,
    RateLimitIR,
    RoutePolicyIR,
)
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
        if key == "conditional":
            fail(f"{fld}.conditional", "is not supported by llmgw (CEL conditions)", UNSUPPORTED)
        elif key not in ("local", "global"):
            fail(f"{fld}.{key}", "is not a field of rateLimit")
    global_limit = None
    if "global" in raw:
        global_limit = _global(raw["global"], path=f"{fld}.global", ns=policy.namespace, fail=fail)
    entries = raw.get("local")
    if entries is None:
        return (RateLimitIR(global_limit=global_limit) if global_limit else None), problems
    if not isinstance(entries, list) or not entries:
        fail(f"{fld}.local", "must be a non-empty list")
        return None, problems
    rules = []
    for i, entry in enumerate(entries):
        rule = _entry(entry, path=f"{fld}.local[{i}]", rid=f"{policy.key}/local/{i}", ours=ours, fail=fail)
        if rule is not None:
            rules.append(rule)
    if not rules and global_limit is None:
        return None, problems
    return RateLimitIR(local=tuple(rules), global_limit=global_limit), problems


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


_HEADER = re.compile(r"""^request\.headers\[\s*(["'])([A-Za-z0-9!#$%&*+.^_`|~-]+)\1\s*\]$""")
_LITERAL = re.compile(r"""^(["'])([^"'\\]*)\1$""")
_URL = re.compile(r"^http://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})/?$")


def _global(raw: Any, *, path: str, ns: str, fail: Any) -> GlobalRateLimitIR | None:
    if not isinstance(raw, Mapping):
        fail(path, "must be a mapping")
        return None
    for key in raw:
        if key not in ("backendRef", "url", "failureMode", "domain", "descriptors"):
            fail(f"{path}.{key}", "is not a field of a global rate limit")
    target = _target(raw, path=path, ns=ns, fail=fail)
    domain = raw.get("domain")
    if not isinstance(domain, str) or not domain:
        fail(f"{path}.domain", "is required (a string)")
        return None
    mode = raw.get("failureMode", "FailClosed")
    if mode not in ("FailOpen", "FailClosed"):
        fail(f"{path}.failureMode", "must be FailOpen or FailClosed")
        return None
    raw_descriptors = raw.get("descriptors")
    if not isinstance(raw_descriptors, list) or not raw_descriptors:
        fail(f"{path}.descriptors", "must be a non-empty list")
        return None
    descriptors = []
    for i, d in enumerate(raw_descriptors):
        descriptor = _descriptor(d, path=f"{path}.descriptors[{i}]", fail=fail)
        if descriptor is None:
            return None
        descriptors.append(descriptor)
    if target is None:
        return None
    return GlobalRateLimitIR(
        domain=domain, host=target[0], port=target[1], descriptors=tuple(descriptors), fail_open=mode == "FailOpen"
    )


def _target(raw: Mapping[str, Any], *, path: str, ns: str, fail: Any) -> tuple[str, int] | None:
    url, ref = raw.get("url"), raw.get("backendRef")
    if (url is None) == (ref is None):
        fail(path, "set exactly one of url and backendRef")
        return None
    if url is not None:
        match = _URL.match(url) if isinstance(url, str) else None
        if match is None:
            fail(f"{path}.url", "must be http://HOST:PORT (https is not supported by llmgw yet)", UNSUPPORTED)
            return None
        port = int(match.group(2))
        if not 1 <= port <= 65535:
            fail(f"{path}.url", "has a port outside 1-65535")
            return None
        return match.group(1).strip("[]"), port
    if not isinstance(ref, Mapping):
        fail(f"{path}.backendRef", "must be a mapping")
        return None
    for key in ref:
        if key not in ("group", "kind", "name", "namespace", "port"):
            fail(f"{path}.backendRef.{key}", "is not a field of a backendRef")
    if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
        fail(f"{path}.backendRef", "must be a Service (the rate-limit service's gRPC port)", UNSUPPORTED)
        return None
    name, ref_port = ref.get("name"), ref.get("port")
    if not isinstance(name, str) or not name:
        fail(f"{path}.backendRef.name", "is required (a string)")
        return None
    if isinstance(ref_port, bool) or not isinstance(ref_port, int) or not 1 <= ref_port <= 65535:
        fail(f"{path}.backendRef.port", "is required (an integer 1-65535)")
        return None
    namespace = ref.get("namespace") or ns
    if not isinstance(namespace, str):
        fail(f"{path}.backendRef.namespace", "must be a string")
        return None
    return f"{name}.{namespace}.svc.cluster.local", ref_port


def _descriptor(raw: Any, *, path: str, fail: Any) -> GlobalDescriptorIR | None:
    if not isinstance(raw, Mapping):
        fail(path, "must be a mapping")
        return None
    for key in raw:
        if key in ("cost", "limitOverride"):
            fail(f"{path}.{key}", "is not supported by llmgw (CEL)", UNSUPPORTED)
            return None
        if key not in ("entries", "unit"):
            fail(f"{path}.{key}", "is not a field of a descriptor")
    unit = raw.get("unit", "Requests")
    if unit not in ("Requests", "Tokens"):
        fail(f"{path}.unit", "must be Requests or Tokens")
        return None
    raw_entries = raw.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        fail(f"{path}.entries", "must be a non-empty list")
        return None
    entries = []
    for i, e in enumerate(raw_entries):
        where = f"{path}.entries[{i}]"
        if not isinstance(e, Mapping) or not isinstance(e.get("name"), str) or not e.get("name"):
            fail(where, "must have a name (a string) and an expression")
            return None
        expression = e.get("expression")
        text = expression.strip() if isinstance(expression, str) else ""
        if header := _HEADER.match(text):
            entries.append(DescriptorEntryIR(key=e["name"], header=header.group(2).lower()))
        elif literal := _LITERAL.match(text):
            entries.append(DescriptorEntryIR(key=e["name"], value=literal.group(2)))
        else:
            fail(
                f"{where}.expression",
                f'{expression!r} is not supported by llmgw: use a string literal or request.headers["name"]',
                UNSUPPORTED,
            )
            return None
    return GlobalDescriptorIR(entries=tuple(entries), tokens=unit == "Tokens")
