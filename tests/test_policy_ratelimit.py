"""traffic.rateLimit parsing: agentgateway's local limits as written, our extensions only in AIPolicy."""

from __future__ import annotations

from typing import Any

from controlplane.gatewayapi.policy_ratelimit import parse_limits
from controlplane.ir import DescriptorEntryIR, GlobalDescriptorIR, GlobalRateLimitIR, LimitRuleIR
from controlplane.resources import Resource


def _policy(kind: str = "AIPolicy") -> Resource:
    api = "llmgw.dev/v1alpha1" if kind == "AIPolicy" else "agentgateway.dev/v1alpha1"
    return Resource(api_version=api, kind=kind, name="p", namespace="ai", body={}, file="p.yaml")


def _parse(raw: Any, kind: str = "AIPolicy") -> tuple[object, list[str]]:
    limits, problems = parse_limits(raw, policy=_policy(kind), fld="spec.traffic.rateLimit")
    return limits, [f"{p.field}: {p.message}" for p in problems]


def test_agentgateway_local_limits_as_written() -> None:
    raw = {"local": [{"requests": 10, "unit": "Minutes", "burst": 5}, {"tokens": 1000, "unit": "Hours"}]}
    limits, problems = _parse(raw, "AgentgatewayPolicy")
    assert problems == []
    assert limits.local == (  # type: ignore[attr-defined]
        LimitRuleIR(id="ai/p/local/0", kind="requests", amount=10, unit="minute", burst=5),
        LimitRuleIR(id="ai/p/local/1", kind="tokens", amount=1000, unit="hour"),
    )


def test_llmgw_extensions_in_aipolicy() -> None:
    raw = {"local": [{"usd": 2.5, "unit": "Months", "key": ["team", "header:X-Project"]}]}
    limits, problems = _parse(raw)
    assert problems == []
    assert limits.local == (  # type: ignore[attr-defined]
        LimitRuleIR(id="ai/p/local/0", kind="usd", amount=2.5, unit="month", keys=("team", "header:x-project")),
    )


def test_extensions_in_the_agentgateway_kind_are_problems() -> None:
    _, problems = _parse({"local": [{"usd": 1, "unit": "Days", "key": ["user"]}]}, "AgentgatewayPolicy")
    assert (
        "spec.traffic.rateLimit.local[0].usd: is an llmgw extension: use kind AIPolicy (llmgw.dev/v1alpha1) for it"
        in (problems)
    )
    assert any(p.startswith("spec.traffic.rateLimit.local[0].key: is an llmgw extension") for p in problems)


def test_conditional_is_reported_not_dropped() -> None:
    limits, problems = _parse({"conditional": []})
    assert limits is None
    assert [p.split(":")[0] for p in problems] == ["spec.traffic.rateLimit.conditional"]


def test_global_limit_as_agentgateway_writes_it() -> None:
    raw = {
        "global": {
            "url": "http://127.0.0.1:8081",
            "domain": "llm",
            "failureMode": "FailOpen",
            "descriptors": [
                {"entries": [{"name": "team", "expression": 'request.headers["X-Team"]'}]},
                {"entries": [{"name": "route", "expression": '"chat"'}], "unit": "Tokens"},
            ],
        }
    }
    limits, problems = _parse(raw, "AgentgatewayPolicy")
    assert problems == []
    assert limits.global_limit == GlobalRateLimitIR(  # type: ignore[attr-defined]
        domain="llm",
        host="127.0.0.1",
        port=8081,
        fail_open=True,
        descriptors=(
            GlobalDescriptorIR(entries=(DescriptorEntryIR(key="team", header="x-team"),)),
            GlobalDescriptorIR(entries=(DescriptorEntryIR(key="route", value="chat"),), tokens=True),
        ),
    )


def test_global_limit_parts_llmgw_cannot_do_are_problems() -> None:
    base = {"domain": "d", "backendRef": {"name": "rls", "port": 8081}}
    _, problems = _parse(
        {"global": {**base, "descriptors": [{"entries": [{"name": "ip", "expression": "source.address"}]}]}}
    )
    assert problems == [
        "spec.traffic.rateLimit.global.descriptors[0].entries[0].expression: 'source.address' is not supported by "
        'llmgw: use a string literal or request.headers["name"]'
    ]
    _, problems = _parse(
        {"global": {**base, "descriptors": [{"entries": [{"name": "a", "expression": "'x'"}], "cost": "1"}]}}
    )
    assert problems == ["spec.traffic.rateLimit.global.descriptors[0].cost: is not supported by llmgw (CEL)"]
    _, problems = _parse({"global": {"domain": "d", "url": "https://rls:8081", "descriptors": [{"entries": []}]}})
    assert problems[0].startswith("spec.traffic.rateLimit.global.url: must be http://HOST:PORT")


def test_bad_entries_name_their_field() -> None:
    _, problems = _parse(
        {
            "local": [
                {"requests": 0, "unit": "Minutes"},
                {"requests": 1, "tokens": 2, "unit": "Minutes"},
                {"tokens": 5, "unit": ["Minutes"]},
                {"requests": 5, "unit": "Minutes", "burst": -1},
                {"requests": 5, "unit": "Weeks"},
            ]
        }
    )
    assert problems == [
        "spec.traffic.rateLimit.local[0].requests: must be an integer of at least 1",
        "spec.traffic.rateLimit.local[1]: must set exactly one of requests, tokens, usd",
        "spec.traffic.rateLimit.local[2].unit: must be one of Seconds, Minutes, Hours, Days, Months",
        "spec.traffic.rateLimit.local[3].burst: must be an integer of at least 0",
        "spec.traffic.rateLimit.local[4].unit: must be one of Seconds, Minutes, Hours, Days, Months",
    ]
