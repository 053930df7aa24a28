"""A provider's Retry-After keeps it out for that long, then it returns (reliability issue, item 13).

Envoy's outlier detection ejects for a fixed time after several failures; a
provider that answers 429/503 with `Retry-After: N` is instead paused for N
seconds from its first such answer (extproc/cooldown.py): attempts Envoy
sends it meanwhile are answered by the gateway and retried on the next
provider, so the provider sees no request until the pause is over. Two
extproc workers: the pause must hold whichever worker runs the next attempt.
A provider without Retry-After keeps the outlier-detection behaviour
(tests/test_gateway_failover.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SCENARIOS = ("429", "503", "plain", "all")
BACKEND = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: b-{s}}}
spec:
  ai:
    groups:
      - providers:
          - {{name: primary, openai: {{model: gpt-primary}}, host: 127.0.0.1, port: {primary}}}
      - providers:
          - {{name: secondary, openai: {{model: gpt-secondary}}, host: 127.0.0.1, port: {secondary}}}
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    names = [f"{role}-{s}" for s in SCENARIOS for role in ("primary", "secondary")]
    started = {n: FakeProviderThread(name=n).start() for n in names}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    routes = http_route_yaml(*(route_rule(f"/{s}", f"b-{s}", rewrite=True) for s in SCENARIOS))
    backends = "".join(
        BACKEND.format(s=s, primary=fakes[f"primary-{s}"].port, secondary=fakes[f"secondary-{s}"].port)
        for s in SCENARIOS
    )
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + backends)
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _openai(gw: GatewayProcess, s: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/{s}/v1", api_key="k", max_retries=0, timeout=20)


def _answer(gw: GatewayProcess, s: str, text: str) -> str:
    reply = _openai(gw, s).chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_keeps_the_provider_out_for_that_long_then_it_returns(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], status: str
) -> None:
    primary = fakes[f"primary-{status}"]
    pause = 4.0
    primary.set_behaviour(error_status=int(status), retry_after=pause, error_count=1)  # then healthy again
    started = time.monotonic()
    assert _answer(gateway, status, "first").startswith(f"Hello from secondary-{status}")
    assert len(primary.requests) == 1
    # Within the pause (with a second of margin), nothing reaches the primary although it is healthy.
    asked = 0
    while time.monotonic() - started < pause - 1 and asked < 8:
        assert _answer(gateway, status, f"n{asked}").startswith(f"Hello from secondary-{status}")
        asked += 1
    assert asked > 0
    assert len(primary.requests) == 1, "a paused provider got traffic"
    # After the pause it is used again (well before outlier detection's 15 s would allow).
    wait_until(
        lambda: _answer(gateway, status, "back?").startswith(f"Hello from primary-{status}"),
        timeout=pause + 8,
        interval=0.25,
        what="traffic back on the primary after its Retry-After",
    )


def test_without_retry_after_one_429_pauses_nothing(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    fakes["primary-plain"].set_behaviour(error_status=429, error_count=1)
    assert _answer(gateway, "plain", "first").startswith("Hello from secondary-plain")
    assert _answer(gateway, "plain", "second").startswith("Hello from primary-plain")


def test_when_every_provider_is_paused_the_client_gets_a_429_with_retry_after_in_its_schema(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    for role in ("primary", "secondary"):
        fakes[f"{role}-all"].set_behaviour(error_status=429, retry_after=30, error_count=1)
    with pytest.raises(openai.RateLimitError):
        _answer(gateway, "all", "both rate limited")  # each provider's own 429
    sent = {role: len(fakes[f"{role}-all"].requests) for role in ("primary", "secondary")}
    assert sent == {"primary": 1, "secondary": 1}

    with pytest.raises(openai.RateLimitError) as info:
        _answer(gateway, "all", "still paused")
    retry_after = int(info.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 30
    assert info.value.code == "providers_paused"

    client = anthropic.Anthropic(base_url=f"{gateway.url}/all", api_key="k", max_retries=0, timeout=20)
    with pytest.raises(anthropic.RateLimitError) as ainfo:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "paused?"}])
    body = ainfo.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(ainfo.value.response.headers["retry-after"]) <= 30
    # the paused providers saw none of it
    assert {role: len(fakes[f"{role}-all"].requests) for role in ("primary", "secondary")} == sent
