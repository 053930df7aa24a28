"""A stream cut after it started is an error the client sees, and its usage so far is recorded (item 13).

Through the real gateway with the official SDKs; every scenario has its own
backend and fake provider. Two ways a stream stops early:

- the provider resets the connection mid-stream (`cut_stream_after_chunks`):
  Envoy resets the client's stream itself (once response headers went out no
  filter can add bytes), so the SDK raises a transport error; the metrics
  (interrupted streams, tokens so far) and the access log (identity and usage
  sent to Envoy as the stream went) still have the request;
- the provider ends the response early but cleanly (`cut_cleanly`): without
  the gateway the SDK would return the truncated answer as if complete; the
  gateway ends the stream with an error event in the client's schema
  (OpenAI `data: {"error": ...}`, Anthropic `event: error`), which the SDK
  raises.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# scenario -> (client API, provider kind)
SCENARIOS = {
    "oa-oa-reset": ("openai", "openai"),
    "oa-an-reset": ("openai", "anthropic"),
    "an-an-reset": ("anthropic", "anthropic"),
    "an-oa-reset": ("anthropic", "openai"),
    "oa-oa-clean": ("openai", "openai"),
    "an-an-clean": ("anthropic", "anthropic"),
}
INCOMPLETE = "The provider's stream ended before it was complete."

BACKEND = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {s}}}
spec:
  ai:
    provider: {{{kind}: {{model: {model}}}, host: 127.0.0.1, port: {port}}}
  policies: {{auth: {{key: sk-{s}}}}}
"""
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    started = {s: FakeProviderThread(name=s).start() for s in SCENARIOS}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    routes = http_route_yaml(*(route_rule(f"/{s}", s, rewrite=True) for s in SCENARIOS))
    backends = "".join(
        BACKEND.format(s=s, kind=kind, model=MODELS[kind], port=fakes[s].port) for s, (_, kind) in SCENARIOS.items()
    )
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + backends)
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _stream(gw: GatewayProcess, scenario: str) -> str:
    """Stream a completion with the client's own SDK; the text received before any error."""
    client_api, _ = SCENARIOS[scenario]
    text = ""
    if client_api == "openai":
        client = openai.OpenAI(base_url=f"{gw.url}/{scenario}/v1", api_key="k", max_retries=0, timeout=20)
        for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "tell me a long story"}], stream=True
        ):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        return text
    aclient = anthropic.Anthropic(base_url=f"{gw.url}/{scenario}", api_key="k", max_retries=0, timeout=20)
    with aclient.messages.stream(
        model="m", max_tokens=200, messages=[{"role": "user", "content": "tell me a long story"}]
    ) as stream:
        for piece in stream.text_stream:
            text += piece
    return text


def _metric(gw: GatewayProcess, name: str, scenario: str, extra: str = "") -> float:
    total = 0.0
    for line in gw.metrics().splitlines():
        if line.startswith(name + "{") and f'backend="default/{scenario}"' in line and extra in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _access_log(gw: GatewayProcess, scenario: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    return [rec for rec in lines if rec.get("path", "").startswith(f"/{scenario}/")]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.endswith("-reset")])
def test_a_reset_mid_stream_is_an_error_and_its_usage_so_far_is_recorded(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], scenario: str
) -> None:
    _, provider = SCENARIOS[scenario]
    # Anthropic: message_start (input tokens), block start, a delta, then the reset.
    # OpenAI: role chunk, two content chunks (usage comes only at the end), then the reset.
    fakes[scenario].set_behaviour(cut_stream_after_chunks=3, chunks=8, chunk_interval_ms=10, error_count=1)
    with pytest.raises((openai.APIError, anthropic.APIError, httpx.HTTPError)):
        _stream(gateway, scenario)

    interrupted = wait_until(
        lambda: _metric(gateway, "llmgw_gen_ai_server_interrupted_streams_total", scenario),
        what="the interrupted stream in the metrics",
    )
    assert interrupted == 1
    [rec] = wait_until(lambda: _access_log(gateway, scenario), what="the access log line")
    assert "upstream_reset_after_response_started" in str(rec["response_code_details"])
    assert rec["provider"] == f"default/{scenario}/{provider}"  # identity written before the cut
    assert rec["gen_ai.provider.name"] == provider
    assert rec["gen_ai.request.model"] == "m"
    assert rec["gen_ai.server.time_to_first_token_ms"] is not None
    if provider == "anthropic":  # message_start said how many input tokens; they are counted
        assert isinstance(rec["gen_ai.usage.input_tokens"], int) and rec["gen_ai.usage.input_tokens"] > 0
        input_tokens = _metric(gateway, "llmgw_gen_ai_client_token_usage_sum", scenario, 'gen_ai_token_type="input"')
        assert input_tokens == rec["gen_ai.usage.input_tokens"]
    # the next request is whole again
    assert _stream(gateway, scenario).startswith(f"Hello from {scenario}")


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.endswith("-clean")])
def test_a_stream_ended_early_ends_with_an_error_event_in_the_client_schema(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], scenario: str
) -> None:
    client_api, _ = SCENARIOS[scenario]
    fakes[scenario].set_behaviour(cut_stream_after_chunks=3, cut_cleanly=True, chunks=8, error_count=1)
    expected = openai.APIError if client_api == "openai" else anthropic.APIStatusError
    with pytest.raises(expected) as info:
        _stream(gateway, scenario)
    assert INCOMPLETE in str(info.value)
    if client_api == "anthropic":
        assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": INCOMPLETE}}
    else:
        assert info.value.body == {  # type: ignore[comparison-overlap]
            "message": INCOMPLETE,
            "type": "server_error",
            "code": "stream_incomplete",
            "param": None,
        }
    assert _stream(gateway, scenario).startswith(f"Hello from {scenario}")
