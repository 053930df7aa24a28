"""Limits through the real gateway (Envoy + 2 extproc workers sharing the SQLite store), official SDKs.

Windows are days (hours for agentgateway's own kind), so a test never straddles one
except around midnight UTC; the store is exact, so the 200s are counted exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from extproc.cost import catalog_usd, lookup_catalog
from extproc.usage import Usage
from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, wait_until
from tests.limits_manifests import COST_OF_A_B, limits_manifests

pytestmark = pytest.mark.integration
CONCURRENCY = 16


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", limits_manifests(port=gw.port, upstream_port=provider.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _client(gw: GatewayProcess, prefix: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + prefix, api_key="sk-client", max_retries=0, default_headers=headers)


def _chat(client: openai.OpenAI, **kw: object) -> tuple[int, dict[str, str], object]:
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a b"}], **kw
        )
        return raw.http_response.status_code, dict(raw.headers), raw.parse()
    except openai.APIStatusError as exc:
        return exc.status_code, dict(exc.response.headers), exc.body


def test_request_limit_is_exact_under_concurrent_load(gateway: GatewayProcess) -> None:
    clients = [_client(gateway, "/v1") for _ in range(CONCURRENCY)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(lambda i: _chat(clients[i % CONCURRENCY]), range(40)))
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert len(ok) == 8 and len(refused) == 32, [r[0] for r in results]
    _, headers, body = refused[0]
    assert isinstance(body, dict) and body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"
    assert headers["retry-after"].isdigit() and int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "8" and headers["x-ratelimit-remaining-requests"] == "0"
    assert {h["x-ratelimit-limit-requests"] for _, h, _ in ok} == {"8"}
    assert sorted(int(h["x-ratelimit-remaining-requests"]) for _, h, _ in ok) == list(range(8))
    assert "rate_limiting_reset" not in headers  # OpenAI's names only
    assert headers["x-ratelimit-reset-requests"].endswith("s")


def test_refusal_is_in_the_clients_schema(gateway: GatewayProcess) -> None:
    """The OpenAI SDK raises RateLimitError with OpenAI's error body; Anthropic's client gets Anthropic's."""
    with pytest.raises(openai.RateLimitError) as info:
        _client(gateway, "/v1").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "8 requests per day" in info.value.message
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as ainfo:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": ainfo.value.body["error"]["message"]},
    }  # type: ignore[index]


def test_token_limit_is_exact_under_concurrent_load(gateway: GatewayProcess) -> None:
    """100 tokens a day: whatever the interleaving, the 200s never used more than 100 tokens."""
    clients = [_client(gateway, "/tok") for _ in range(CONCURRENCY)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(lambda i: _chat(clients[i % CONCURRENCY], max_tokens=10), range(40)))
    ok = [r for r in results if r[0] == 200]
    used = sum(r[2].usage.total_tokens for r in ok)  # type: ignore[attr-defined]
    assert ok and used <= 100, (len(ok), used)
    assert all(r[0] in (200, 429) for r in results)
    # Once the reservations are settled what is left is exactly 100 - used.
    status, headers, _ = _chat(clients[0], max_tokens=10)
    remaining = int(headers["x-ratelimit-remaining-tokens"])
    if status == 200:  # this request reserved its estimate from what was left
        assert remaining < 100 - used
    else:
        assert status == 429 and remaining == max(0, 100 - used) and int(headers["retry-after"]) >= 1


def test_usd_budget_stops_a_team_after_its_spend_crosses_it_streaming(gateway: GatewayProcess) -> None:
    """$0.02 a day per x-team; each streamed "a b" costs $0.007: three streams, then 429; other teams go on."""
    red = _client(gateway, "/usd", **{"x-team": "red"})
    spent = 0.0
    outcomes = []
    for _ in range(5):
        try:
            stream = red.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "a b"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
            spent += COST_OF_A_B
            outcomes.append(200)
        except openai.RateLimitError as exc:
            outcomes.append(429)
            assert exc.response.headers["x-ratelimit-limit-usd"] == "0.02"
            assert exc.response.headers["x-ratelimit-remaining-usd"] == "0"
    assert outcomes == [200, 200, 200, 429, 429]
    assert spent > 0.02
    assert _chat(_client(gateway, "/usd", **{"x-team": "blue"}))[0] == 200


def test_cost_is_counted_in_metrics_and_access_log(gateway: GatewayProcess) -> None:
    status, _, _ = _chat(_client(gateway, "/open"))
    assert status == 200

    def priced_cost() -> float | None:
        lines = [x for x in gateway.metrics().splitlines() if x.startswith("llmgw_gen_ai_cost_usd_total{")]
        total = sum(float(x.rsplit(" ", 1)[1]) for x in lines if 'backend="default/priced"' in x)
        return total or None

    # red's three streams and blue's request went to the priced backend
    assert wait_until(priced_cost, "cost metric") == pytest.approx(4 * COST_OF_A_B, rel=1e-6)

    def logged() -> list[dict[str, object]]:
        return [json.loads(x) for x in gateway.log().splitlines() if x.startswith("{") and '"cost_usd"' in x]

    def answered() -> list[dict[str, object]]:  # the 200s (red's refusals are in the log too, unpriced)
        return [e for e in logged() if str(e.get("backend", "")).endswith("priced") and e.get("status") == 200]

    entries = wait_until(lambda: len(answered()) >= 4 and answered(), "four priced answers in the access log")
    assert [e["cost_usd"] for e in entries] == [pytest.approx(COST_OF_A_B)] * len(entries)
    # /open's backend has no `pricing`: the catalog's price, which the workers asked the control plane for.
    [opened] = wait_until(
        lambda: [e for e in logged() if str(e.get("backend", "")).endswith("/default/fake") and e.get("status") == 200][
            :1
        ],
        "the /open request in the access log",
    )
    catalog = lookup_catalog("openai", str(opened["gen_ai.response.model"] or "gpt-4o-mini"))
    usage = Usage(input=int(opened["gen_ai.usage.input_tokens"]), output=int(opened["gen_ai.usage.output_tokens"]))
    assert catalog is not None and opened["cost_usd"] == pytest.approx(catalog_usd(usage, catalog))
    # The workers priced them with what the control plane sent: the catalog (genai-prices, with pydantic)
    # is loaded in the supervisor only (extproc/prices.py).
    workers = [pid for pid in gateway.child_pids() if b"extproc" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers and not [pid for pid in workers if "pydantic_core" in Path(f"/proc/{pid}/maps").read_text()]
    assert gateway.proc is not None and "pydantic_core" in Path(f"/proc/{gateway.proc.pid}/maps").read_text()


def test_agentgateway_policy_as_written_limits_its_route(gateway: GatewayProcess) -> None:
    # The window is the clock hour: start with a minute of it left, so all four requests share it.
    wait_until(lambda: time.time() % 3600 < 3540 or None, "a clock hour with a minute left", timeout=65)
    statuses = [_chat(_client(gateway, "/hourly"))[0] for _ in range(4)]
    assert statuses == [200, 200, 429, 429]


def test_unlimited_route_carries_no_ratelimit_headers(gateway: GatewayProcess) -> None:
    status, headers, _ = _chat(_client(gateway, "/open"))
    assert status == 200 and not [h for h in headers if h.startswith("x-ratelimit")]


def test_limits_survive_a_restart(provider: FakeProviderThread) -> None:
    """The SQLite store lives in the run directory, outside the state folder wiped on start."""
    gw = GatewayProcess(workers=1)
    try:
        gw.write("gw.yaml", limits_manifests(port=gw.port, upstream_port=provider.port, requests=2))
        gw.start()
        assert [_chat(_client(gw, "/v1"))[0] for _ in range(2)] == [200, 200]
        assert gw.stop() == 0
        gw.start()
        assert _chat(_client(gw, "/v1"))[0] == 429
        with httpx.Client() as c:
            assert c.get(gw.url + "/v1/models").status_code == 200  # a GET without body is no API call limited
    finally:
        gw.stop()
        gw.cleanup()
