"""Failover across providers of different APIs, within the same client request (issue 5).

Through the real Envoy with two extproc workers: an OpenAI-compatible primary
in group 0, an Anthropic secondary in group 1 (and Bedrock in another
backend). Faults are injected in the primary; the client must get its answer
from the secondary, translated and authenticated for the provider that
actually answered, in the client's own schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from fakeprovider import bedrock_wire as bw
from tests.harness import GatewayProcess, gateway_yaml, wait_until

pytestmark = pytest.mark.integration

MANIFESTS = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
{scenario_rules}
    - matches: [{{path: {{type: PathPrefix, value: /bedrock}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: to-bedrock}}]
    - matches: [{{path: {{type: PathPrefix, value: /split}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs:
        - {{group: llmgw.dev, kind: AIBackend, name: cheap, weight: 70}}
        - {{group: llmgw.dev, kind: AIBackend, name: pricey, weight: 30}}
{scenario_backends}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: to-bedrock}}
spec:
  ai:
    groups:
      - providers:
          - {{name: primary, openai: {{}}, host: 127.0.0.1, port: {primary2}, policies: {{auth: {{key: sk-p2}}}}}}
      - providers:
          - name: bedrock
            bedrock: {{model: anthropic.claude-3-5-haiku-20241022-v1:0, region: us-east-1}}
            host: 127.0.0.1
            port: {bedrock}
            policies: {{auth: {{aws: {{secretRef: {{name: aws-keys}}}}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: cheap}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {cheap}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: pricey}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {pricey}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-keys}}
stringData: {{accessKey: {aws_key}, secretKey: {aws_secret}}}
"""

# Each scenario has its own primary (and so its own outlier-detection state), one shared secondary.
SCENARIOS = ("500", "503", "429", "reset", "stall", "stream", "cut", "eject", "metrics")
NAMES = ("secondary", "primary2", "bedrock", "cheap", "pricey", *(f"primary-{s}" for s in SCENARIOS))

RULE = """    - matches: [{{path: {{type: PathPrefix, value: /{s}}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      timeouts: {{backendRequest: 1s}}
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: resilient-{s}}}]"""
BACKEND = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: resilient-{s}}}
spec:
  ai:
    groups:
      - providers:
          - {{name: primary, openai: {{model: gpt-4o-mini}}, host: 127.0.0.1, port: {primary},
             policies: {{auth: {{key: sk-primary}}}}}}
      - providers:
          - {{name: claude, anthropic: {{model: claude-haiku-4-5}}, host: 127.0.0.1, port: {secondary},
             policies: {{auth: {{key: sk-ant-secondary}}}}}}"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    started = {name: FakeProviderThread(name=name).start() for name in NAMES}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    ports = {name: fp.port for name, fp in fakes.items() if not name.startswith("primary-")}
    ports["scenario_rules"] = "\n".join(RULE.format(s=sc) for sc in SCENARIOS)  # type: ignore[assignment]
    ports["scenario_backends"] = "\n".join(  # type: ignore[assignment]
        BACKEND.format(s=sc, primary=fakes[f"primary-{sc}"].port, secondary=fakes["secondary"].port) for sc in SCENARIOS
    )
    routes_and_backends = MANIFESTS.format(aws_key=bw.TEST_ACCESS_KEY, aws_secret=bw.TEST_SECRET_KEY, **ports)
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes_and_backends)
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture(autouse=True)
def _fresh(fakes: dict[str, FakeProviderThread]) -> None:
    for fp in fakes.values():
        fp.clear()
        fp.reset_behaviour()


def _client(gw: GatewayProcess, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + prefix, api_key="client-key", max_retries=0, timeout=20)


def _ask(gw: GatewayProcess, text: str, prefix: str) -> str:
    resp = _client(gw, prefix).chat.completions.create(model="app-model", messages=[{"role": "user", "content": text}])
    return resp.choices[0].message.content or ""


FAULTS = {
    "500": {"error_status": 500},
    "503": {"error_status": 503},
    "429": {"error_status": 429, "retry_after": 30},
    "reset": {"reset_connection": True},
    "stall": {"stall_before_headers_ms": 3000},
}


@pytest.mark.parametrize("fault", FAULTS)
def test_failed_primary_is_saved_by_the_anthropic_secondary(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], fault: str
) -> None:
    primary, secondary = fakes[f"primary-{fault}"], fakes["secondary"]
    primary.set_behaviour(error_count=1, **FAULTS[fault])
    assert _ask(gateway, f"save me {fault}", f"/{fault}/v1") == f"Hello from secondary: save me {fault}"
    assert len(primary.requests) == 1 and primary.requests[0].headers["authorization"] == "Bearer sk-primary"
    [rec] = secondary.requests
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == "sk-ant-secondary"
    assert "authorization" not in rec.headers
    assert rec.json["model"] == "claude-haiku-4-5"
    assert rec.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": f"save me {fault}"}]}]


def test_failover_to_bedrock_is_signed_for_bedrock(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    fakes["primary2"].set_behaviour(error_status=503, error_count=1)
    assert _ask(gateway, "to bedrock", "/bedrock/v1") == "Hello from bedrock: to bedrock"
    [rec] = fakes["bedrock"].requests
    assert rec.path.startswith("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse")
    assert rec.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + bw.TEST_ACCESS_KEY)


def test_streaming_fails_over_before_the_first_byte(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    fakes["primary-stream"].set_behaviour(error_status=500, error_count=1)
    chunks = list(
        _client(gateway, "/stream/v1").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "stream on"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from secondary: stream on"


def test_stream_cut_after_the_first_byte_is_an_error_not_a_retry(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    fakes["primary-cut"].set_behaviour(cut_stream_after_chunks=2, chunks=6, chunk_interval_ms=20, error_count=1)
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        list(
            _client(gateway, "/cut/v1").chat.completions.create(
                model="m", messages=[{"role": "user", "content": "cut"}], stream=True
            )
        )
    assert fakes["secondary"].requests == []  # bytes had reached the client: no retry


def test_a_primary_that_keeps_failing_is_ejected_and_comes_back(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    primary, secondary = fakes["primary-eject"], fakes["secondary"]
    primary.set_behaviour(error_status=503)  # until further notice
    for i in range(6):
        assert _ask(gateway, f"n{i}", "/eject/v1") == f"Hello from secondary: n{i}"
    tried = len(primary.requests)
    for i in range(6):
        assert _ask(gateway, f"m{i}", "/eject/v1").startswith("Hello from secondary")
    assert len(primary.requests) == tried, "an ejected primary still got traffic"
    primary.reset_behaviour()  # it recovers; after the ejection time traffic returns
    wait_until(
        lambda: _ask(gateway, "back?", "/eject/v1").startswith("Hello from primary"),
        timeout=40,
        interval=0.5,
        what="traffic back on the recovered primary",
    )
    assert len(secondary.requests) >= 12


def test_metrics_say_which_provider_answered_and_how_many_attempts(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]
) -> None:
    fakes["primary-metrics"].set_behaviour(error_status=500, error_count=1)
    assert _ask(gateway, "count attempts", "/metrics/v1").startswith("Hello from secondary")

    def attempts_line() -> str | None:
        for line in gateway.metrics().splitlines():
            bucket = line.startswith("llmgw_gen_ai_server_request_attempts_bucket") and 'le="1.0"' in line
            if bucket and 'backend="default/resilient-metrics"' in line:
                return line
        return None

    line = wait_until(attempts_line, what="attempts metric")
    # at least one anthropic-answered request needed more than one attempt
    count_line = next(
        x
        for x in gateway.metrics().splitlines()
        if x.startswith("llmgw_gen_ai_server_request_attempts_count") and "anthropic" in x
    )
    assert float(count_line.rsplit(" ", 1)[1]) > float(line.rsplit(" ", 1)[1])


def test_weighted_split_70_30(gateway: GatewayProcess, fakes: dict[str, FakeProviderThread]) -> None:
    counts: Counter[str] = Counter()
    client = _client(gateway, "/split/v1")
    for i in range(300):
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
        counts[(reply.choices[0].message.content or "").split(":")[0]] += 1
    # Binomial(300, 0.3): mean 90, sd ~7.9; 60..120 is beyond 3.5 sd.
    assert counts["Hello from cheap"] + counts["Hello from pricey"] == 300
    assert 60 <= counts["Hello from pricey"] <= 120, counts
