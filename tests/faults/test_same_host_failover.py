"""Providers that share one host:port are still distinct endpoints (reliability issue, item 6).

Two providers on one API host (a cheap model then an expensive one on
api.openai.com, two deployments on one Azure resource) differ only in what
the gateway sends them, not in where. Envoy keys the hosts of a cluster by
address, so they must not be endpoints of the same cluster: each scenario
below has its own fake provider (its own outlier-detection state), both
providers of a backend point at that one fake with different `model`s, and
the fake fails only the first model's requests (`fault_model`).

Scenarios: IP hosts (EDS) and DNS names (STRICT_DNS, `localhost`), priority
groups (failover) and one group (load balancing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CHEAP, PRICEY = "gpt-cheap", "gpt-pricey"
SCENARIOS = {  # name -> (host, same group)
    "ip": ("127.0.0.1", False),
    "dns": ("localhost", False),
    "ip-group": ("127.0.0.1", True),
    "dns-group": ("localhost", True),
}

PROVIDER = (
    "{{name: {name}, openai: {{model: {model}}}, host: {host}, port: {port}, policies: {{auth: {{key: sk-{name}}}}}}}"
)
TWO_GROUPS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {s}}}
spec:
  ai:
    groups:
      - providers: [{cheap}]
      - providers: [{pricey}]
"""
ONE_GROUP = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {s}}}
spec:
  ai:
    groups:
      - providers: [{cheap}, {pricey}]
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    started = {s: FakeProviderThread(name=s).start() for s in SCENARIOS}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    backends = []
    for s, (host, one_group) in SCENARIOS.items():
        port = fakes[s].port
        cheap = PROVIDER.format(name="cheap", model=CHEAP, host=host, port=port)
        pricey = PROVIDER.format(name="pricey", model=PRICEY, host=host, port=port)
        backends.append((ONE_GROUP if one_group else TWO_GROUPS).format(s=s, cheap=cheap, pricey=pricey))
    routes = http_route_yaml(*(route_rule(f"/{s}", s, rewrite=True) for s in SCENARIOS))
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + "".join(backends))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture(autouse=True)
def _fresh(fakes: dict[str, FakeProviderThread]) -> None:
    for fp in fakes.values():
        fp.clear()
        fp.reset_behaviour()


def _chat(gw: GatewayProcess, scenario: str, text: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{gw.url}/{scenario}/v1", api_key="client-key", max_retries=0, timeout=20)
    return client.chat.completions.create(model="app-model", messages=[{"role": "user", "content": text}])


def _sent(fp: FakeProviderThread) -> list[tuple[str, str]]:
    """(model, key) of every request the shared fake received, in order."""
    return [(r.json["model"], r.headers["authorization"]) for r in fp.requests]


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("scenario", ["ip", "dns"])
def test_secondary_on_the_same_host_saves_the_primary(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], scenario: str, status: int
) -> None:
    fp = fakes[scenario]
    fp.set_behaviour(error_status=status, error_count=1, fault_model=CHEAP)  # no Retry-After: no pause
    reply = _chat(gateway, scenario, "save me")
    assert reply.model == PRICEY
    assert _sent(fp) == [(CHEAP, "Bearer sk-cheap"), (PRICEY, "Bearer sk-pricey")]
    # and without a fault, the primary answers again (nothing was ejected by one failure)
    assert _chat(gateway, scenario, "again").model == CHEAP


@pytest.mark.parametrize("scenario", ["ip-group", "dns-group"])
def test_one_group_on_one_host_balances_and_fails_over(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], scenario: str
) -> None:
    fp = fakes[scenario]
    seen = Counter(_chat(gateway, scenario, f"n{i}").model for i in range(20))
    assert set(seen) == {CHEAP, PRICEY}, seen  # both providers get traffic
    assert all(key == f"Bearer sk-{model.removeprefix('gpt-')}" for model, key in _sent(fp))
    fp.clear()
    fp.set_behaviour(error_status=500, fault_model=CHEAP)  # the cheap model fails until further notice
    for i in range(6):
        assert _chat(gateway, scenario, f"m{i}").model == PRICEY
    assert (PRICEY, "Bearer sk-pricey") in _sent(fp)
