"""The limits core: windows, buckets per descriptor, check before and charge after, headers, failure modes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from extproc.contract import LimitRuleConfig
from extproc.policies import limits
from extproc.store import FAIL_CLOSED, FAIL_OPEN, StoreUnavailable, Taken
from extproc.store.sqlite import SqliteStore
from extproc.usage import Usage

NOW = 1_800_000_030.0  # 30 s into a minute


def _rule(
    kind: str, amount: float, *, unit: str = "minute", keys: tuple[str, ...] = (), rid: str = ""
) -> LimitRuleConfig:
    return LimitRuleConfig(id=rid or f"default/p/{kind}", kind=kind, amount=amount, unit=unit, keys=keys)


def _values(**kw: str) -> object:
    return lambda key: kw.get(key)


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_windows_align_to_the_clock_and_calendar_months() -> None:
    assert limits.window("minute", NOW) == (30_000_000, 1_800_000_000.0, 1_800_000_060.0)
    index, start, end = limits.window("month", datetime(2026, 12, 15, tzinfo=UTC).timestamp())
    assert index == 2026 * 12 + 11
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 12, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(end, UTC) == datetime(2027, 1, 1, tzinfo=UTC)


def test_one_bucket_per_descriptor_value_and_rules_without_a_value_skip() -> None:
    rules = (_rule("requests", 5, keys=("user",)), _rule("tokens", 100, keys=("team",), rid="default/p/t"))
    alice = limits.applicable(rules, value=_values(user="alice", team="red"), now=NOW)
    bob = limits.applicable(rules, value=_values(user="bob", team="red"), now=NOW)
    anonymous = limits.applicable(rules, value=_values(), now=NOW)
    assert alice[0].bucket.key != bob[0].bucket.key and alice[1].bucket.key == bob[1].bucket.key
    assert anonymous == ()
    assert "alice" not in alice[0].bucket.key  # descriptor values are hashed (headers may carry anything)


def test_request_limit_refuses_with_retry_after_and_openai_headers() -> None:
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("requests", 2),), value=_values(), now=NOW)
    decisions = [_run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW)) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[0].headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "30s",
    }
    refused = decisions[2]
    assert refused.status == 429 and refused.headers["retry-after"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "2 requests per minute" in refused.message


def test_token_limit_checks_before_and_charges_after_then_waits_for_enough_windows() -> None:
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("tokens", 100),), value=_values(), now=NOW)
    assert _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW)).allowed
    usage = Usage(input=200, output=50)  # more than the window holds: allowed (unknown before), charged
    _run(limits.charge(applied, store=store, usage=usage, cost_usd=None, failure_mode=FAIL_CLOSED))
    refused = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW))
    assert not refused.allowed and refused.kind == "tokens"
    # -150 left: the next window brings it to -50, the one after to 50: 30 s + 60 s.
    assert refused.headers["retry-after"] == "90"


def test_usd_budget_stops_after_the_spend_crosses_it() -> None:
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("usd", 0.001, unit="day", keys=("user",)),), value=_values(user="a"), now=NOW)
    allowed = 0
    for _ in range(10):
        if not _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW)).allowed:
            break
        allowed += 1
        _run(limits.charge(applied, store=store, usage=None, cost_usd=0.0004, failure_mode=FAIL_CLOSED))
    assert allowed == 3  # 0.0004, 0.0008, 0.0012: the third crosses the budget, the fourth is refused
    headers = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW)).headers
    assert headers["x-ratelimit-limit-usd"] == "0.001" and headers["x-ratelimit-remaining-usd"] == "0"


def test_a_refused_request_takes_nothing_from_its_other_buckets() -> None:
    store = SqliteStore(":memory:")
    rules = (_rule("requests", 10, rid="default/p/wide"), _rule("requests", 1, keys=("user",), rid="default/p/n"))
    applied = limits.applicable(rules, value=_values(user="u"), now=NOW)
    _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW))
    refused = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW))
    assert not refused.allowed
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    wide_only = limits.applicable(rules[:1], value=_values(), now=NOW)
    assert (
        _run(limits.check(wide_only, store=store, failure_mode=FAIL_CLOSED, now=NOW)).headers[
            "x-ratelimit-remaining-requests"
        ]
        == "8"
    )


class _DownStore:
    name = "redis"

    async def take(self, buckets: object, *, need: object, take: object) -> Taken:
        raise StoreUnavailable("redis store: ConnectionError")

    async def charge(self, buckets: object, *, amounts: object) -> tuple[float, ...]:
        raise StoreUnavailable("redis store: ConnectionError")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("mode", "allowed", "status"), [(FAIL_OPEN, True, 200), (FAIL_CLOSED, False, 503)])
def test_store_down_follows_the_failure_mode(mode: str, allowed: bool, status: int) -> None:
    applied = limits.applicable((_rule("requests", 1),), value=_values(), now=NOW)
    before = limits.STORE_ERRORS.labels("redis", "take", mode)._value.get()
    decision = _run(limits.check(applied, store=_DownStore(), failure_mode=mode, now=NOW))
    assert (decision.allowed, decision.status) == (allowed, status)
    assert limits.STORE_ERRORS.labels("redis", "take", mode)._value.get() == before + 1
    if not allowed:
        assert "retry" in decision.message and decision.headers["retry-after"] == "1"


def test_charge_on_a_down_store_is_counted_not_raised() -> None:
    applied = limits.applicable((_rule("tokens", 10),), value=_values(), now=NOW)
    _run(limits.charge(applied, store=_DownStore(), usage=Usage(input=5), cost_usd=None, failure_mode=FAIL_OPEN))


def test_reset_durations_in_openai_format() -> None:
    assert [limits.duration(s) for s in (0.12, 1, 59.5, 360, 3723)] == ["120ms", "1s", "1m0s", "6m0s", "1h2m3s"]


def test_token_reservation_holds_under_concurrency_and_is_given_back() -> None:
    """Requests in flight reserve their estimate, so they cannot all spend the last tokens; the charge
    replaces the reservation with the real usage."""
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("tokens", 100),), value=_values(), now=NOW)
    first = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, tokens=60, now=NOW))
    second = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, tokens=60, now=NOW))
    assert first.allowed and first.reserved == (60.0,) and not second.allowed
    _run(
        limits.charge(
            applied,
            store=store,
            usage=Usage(input=5, output=5),
            cost_usd=None,
            failure_mode=FAIL_CLOSED,
            reserved=first.reserved,
        )
    )
    again = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, tokens=60, now=NOW))
    assert again.allowed and again.headers["x-ratelimit-remaining-tokens"] == "30"  # 100 - 10 - 60


def test_a_reservation_larger_than_the_bucket_passes_when_the_bucket_is_full() -> None:
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("tokens", 100),), value=_values(), now=NOW)
    assert _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, tokens=5000, now=NOW)).allowed
    assert limits.estimate_tokens(body_bytes=400, max_output=50) == 151


def test_a_cut_stream_keeps_its_reservation() -> None:
    """OpenAI reports usage in the last chunk: a stream cut before it counted nothing, and giving the
    reservation back would make cutting streams a way around the limit."""
    store = SqliteStore(":memory:")
    applied = limits.applicable((_rule("tokens", 100),), value=_values(), now=NOW)
    taken = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, tokens=30, now=NOW))
    _run(
        limits.charge(
            applied,
            store=store,
            usage=None,
            cost_usd=None,
            failure_mode=FAIL_CLOSED,
            reserved=taken.reserved,
            interrupted=True,
        )
    )
    after = _run(limits.check(applied, store=store, failure_mode=FAIL_CLOSED, now=NOW))
    assert after.headers["x-ratelimit-remaining-tokens"] == "70"
