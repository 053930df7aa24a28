"""Request, token and USD limits: check before the request, charge after the response.

A route's rules (`ExtprocConfig.limits`, from agentgateway's
`traffic.rateLimit.local` and our own token limits and USD budgets) become
one bucket each per distinct descriptor value (the caller's user, team,
tenant or key, the route, model, backend or a request header). Before the
request goes upstream, `check` takes one request from every request bucket
and reserves the request's token estimate (`estimate_tokens`: its size in
bytes / 4 plus its max_tokens, at most a bucket's ceiling) from every token
bucket, and refuses when a bucket cannot cover that (a USD bucket needs
something left). After the response, `charge` settles what it really used
(input + output tokens, the reservation given back; its priced cost),
streams at their end, a cut stream what was counted (at least its reservation). Reserving makes a
token limit hold under concurrency: requests in flight cannot all spend
the last tokens at once. All buckets of a request are checked and
taken in one atomic store call, so limits are exact across the gateway's
workers (SQLite) and replicas (Redis).

Refused: 429 in the client's schema with `Retry-After` (when the bucket
will hold enough again) and OpenAI's `x-ratelimit-*` headers, which every
response of a limited route carries. The store unreachable: `FailOpen`
lets the request through, `FailClosed` answers 503 with a short
Retry-After (the gateway's fault, not the client's); both count
`llmgw_limits_store_errors_total` and log.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from extproc.contract import LimitRuleConfig
from extproc.store import FAIL_OPEN, Bucket, Store, StoreUnavailable
from extproc.usage import Usage

log = logging.getLogger("llmgw.extproc.limits")

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
UNITS = (*UNIT_SECONDS, "month")
KINDS = ("requests", "tokens", "usd")
# What a bucket must hold for a request to start: one request; any token or cent left.
_NEED = {"requests": 1.0, "tokens": 1.0, "usd": 1e-9}
STORE_RETRY_AFTER_S = 1

REJECTIONS = Counter(
    "llmgw_limits_rejections", "Requests refused by a limit or budget (429)", ("gateway", "route", "kind")
)
STORE_ERRORS = Counter(
    "llmgw_limits_store_errors",
    "Limit store calls that failed (Redis down or slow); the failure mode decided the request",
    ("store", "operation", "failure_mode"),
)
_last_store_log = 0.0


def window(unit: str, now: float) -> tuple[int, float, float]:
    """(index, start, end) of the clock-aligned window of `unit` holding `now` (UTC calendar months)."""
    seconds = UNIT_SECONDS.get(unit)
    if seconds is not None:
        index = int(now // seconds)
        return index, index * seconds, (index + 1) * seconds
    t = datetime.fromtimestamp(now, UTC)
    start = datetime(t.year, t.month, 1, tzinfo=UTC).timestamp()
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    end = datetime(year, month, 1, tzinfo=UTC).timestamp()
    return t.year * 12 + t.month - 1, start, end


def _ttl(unit: str) -> int:
    return 2 * UNIT_SECONDS.get(unit, 31 * 86400) + 60


@dataclass(frozen=True, slots=True)
class Applied:
    """One rule as it applies to one request: its bucket and window."""

    rule: LimitRuleConfig
    bucket: Bucket
    end: float  # when the current window ends (the bucket refills)
    length: float  # seconds per window (a month: this month's)


def applicable(
    rules: Sequence[LimitRuleConfig], *, value: Callable[[str], str | None], now: float
) -> tuple[Applied, ...]:
    """The buckets of `rules` for one request; a rule whose descriptor has no value here does not apply
    (a per-user limit for an anonymous caller, a header the request does not carry)."""
    out = []
    for rule in rules:
        values = tuple(value(key) for key in rule.keys)
        if None in values:
            continue
        index, start, end = _window_at(rule.unit, int(now))
        bucket = Bucket(
            key=_bucket_key(rule.id, values),  # type: ignore[arg-type]
            capacity=rule.amount,
            burst=rule.burst,
            window=index,
            ttl_s=_ttl(rule.unit),
        )
        out.append(Applied(rule=rule, bucket=bucket, end=end, length=end - start))
    return tuple(out)


@functools.lru_cache(maxsize=8192)
def _bucket_key(rule_id: str, values: tuple[str, ...]) -> str:
    """A bucket's store key: the rule and a digest of its descriptor values (header values may be
    anything, identity values stay out of Redis keys)."""
    digest = hashlib.sha256("\x00".join(values).encode()).hexdigest()[:20] if values else "-"
    return f"{rule_id}|{digest}"


@functools.lru_cache(maxsize=64)
def _window_at(unit: str, second: int) -> tuple[int, float, float]:
    return window(unit, float(second))


def estimate_tokens(*, body_bytes: int, max_output: int | None) -> int:
    """A request's token reservation: an over-estimate of its input (4 bytes per token) plus its
    output bound; the real usage replaces it after the response."""
    return body_bytes // 4 + 1 + (max_output or 0)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]  # x-ratelimit-* (and retry-after when refused)
    status: int = 200  # 429 refused by a limit, 503 store unavailable and FailClosed
    message: str = ""
    kind: str = ""  # the refusing rule's kind
    reserved: tuple[float, ...] = ()  # tokens reserved per applied rule (given back at charge)


async def check(
    applied: Sequence[Applied], *, store: Store, failure_mode: str, tokens: int = 0, now: float | None = None
) -> Decision:
    """Take one request from each request bucket and reserve `tokens` from each token bucket,
    atomically, if every bucket can cover it."""
    if not applied:
        return Decision(allowed=True, headers={})
    now = time.time() if now is None else now
    reserve = [float(min(tokens, a.bucket.ceiling)) if a.rule.kind == "tokens" else 0.0 for a in applied]
    need = [max(_NEED[a.rule.kind], r) for a, r in zip(applied, reserve, strict=True)]
    take = [1.0 if a.rule.kind == "requests" else r for a, r in zip(applied, reserve, strict=True)]
    try:
        taken = await store.take([a.bucket for a in applied], need=need, take=take)
    except StoreUnavailable as exc:
        _store_failed(store, "take", failure_mode, exc)
        if failure_mode == FAIL_OPEN:
            return Decision(allowed=True, headers={})
        return Decision(
            allowed=False,
            headers={"retry-after": str(STORE_RETRY_AFTER_S)},
            status=503,
            message="The gateway cannot check this route's rate limits right now; retry shortly.",
        )
    headers = rate_headers(applied, taken.levels, now=now)
    if taken.allowed:
        return Decision(allowed=True, headers=headers, reserved=tuple(reserve))
    refusing = [(a, lv, n) for a, lv, n in zip(applied, taken.levels, need, strict=True) if lv < n]
    wait = max(_seconds_until(a, lv, n, now=now) for a, lv, n in refusing)
    first = refusing[0][0].rule
    headers["retry-after"] = str(wait)
    return Decision(
        allowed=False,
        headers=headers,
        status=429,
        message=_refusal(first, wait),
        kind=first.kind,
    )


async def charge(
    applied: Sequence[Applied],
    *,
    store: Store,
    usage: Usage | None,
    cost_usd: float | None,
    failure_mode: str,
    reserved: Sequence[float] = (),
    interrupted: bool = False,
) -> None:
    """Settle what the response used: tokens (less the reservation) and cost (requests were taken before).

    `interrupted`: the stream was cut, so its usage is what was counted (often nothing: OpenAI
    reports usage in the last chunk); its reservation is kept rather than given back, or a
    client could cut every stream to spend tokens for free.
    """
    tokens = (usage.input or 0) + (usage.output or 0) if usage is not None else 0
    amounts: list[float] = []
    buckets: list[Bucket] = []
    held = list(reserved) or [0.0] * len(applied)
    for a, r in zip(applied, held, strict=True):
        spent = {"tokens": max(0.0, tokens - r) if interrupted else tokens - r, "usd": cost_usd or 0.0}
        amount = spent.get(a.rule.kind, 0.0)
        if amount != 0:
            buckets.append(a.bucket)
            amounts.append(amount)
    if not buckets:
        return
    try:
        await store.charge(buckets, amounts=amounts)
    except StoreUnavailable as exc:
        _store_failed(store, "charge", failure_mode, exc)


def rate_headers(applied: Sequence[Applied], levels: Sequence[float], *, now: float) -> dict[str, str]:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (and `-usd` for budgets):
    per kind, the bucket with the least left."""
    tightest: dict[str, tuple[float, Applied]] = {}
    for a, level in zip(applied, levels, strict=True):
        kind = a.rule.kind
        if kind not in tightest or level < tightest[kind][0]:
            tightest[kind] = (level, a)
    out = {}
    for kind, (level, a) in tightest.items():
        left = max(0.0, level)
        out[f"x-ratelimit-limit-{kind}"] = _number(a.rule.amount, kind)
        out[f"x-ratelimit-remaining-{kind}"] = _number(left, kind)
        out[f"x-ratelimit-reset-{kind}"] = duration(max(0.0, a.end - now))
    return out


def duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h2m3s`, `120ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    total = math.ceil(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    return f"{m}m{s}s" if m else f"{s}s"


def _number(value: float, kind: str) -> str:
    if kind == "usd":
        return f"{value:.6f}".rstrip("0").rstrip(".") or "0"
    return str(math.floor(value))


def _seconds_until(a: Applied, level: float, need: float, *, now: float) -> int:
    """Whole seconds until the bucket holds `need` again (≥ 1): the windows needed to refill it."""
    windows = max(1, math.ceil((need - level) / a.rule.amount)) if a.rule.amount > 0 else 1
    return max(1, math.ceil(a.end - now + (windows - 1) * a.length))


def _refusal(rule: LimitRuleConfig, wait: int) -> str:
    what = {"requests": "requests", "tokens": "tokens", "usd": "USD budget"}[rule.kind]
    amount = _number(rule.amount, rule.kind)
    per = f"per {rule.unit}"
    scope = f" per {', '.join(rule.keys)}" if rule.keys else ""
    return f"Rate limit reached: {amount} {what} {per}{scope} ({rule.id}). Retry after {wait} s."


def _store_failed(store: Store, operation: str, failure_mode: str, exc: Exception) -> None:
    global _last_store_log
    STORE_ERRORS.labels(store.name, operation, failure_mode).inc()
    now = time.monotonic()
    if now - _last_store_log >= 5.0:  # one line per 5 s, not one per request while the store is down
        _last_store_log = now
        log.error("limits store unavailable on %s (%s): %s", operation, failure_mode, exc)


__all__ = ["UNITS", "Applied", "Decision", "applicable", "charge", "check", "duration", "rate_headers", "window"]
