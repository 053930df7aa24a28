"""A provider cannot make the gateway skip translating its answer by sending the attempt stage's marker.

`x-llmgw-answered` marks the errors the attempt stage answers itself (already in
the client's schema). Envoy removes a provider's copy between the upstream codec
and the attempt stage (controlplane/xds/answered_marker.py), so an Anthropic
answer carrying it is still translated for an OpenAI client, while the attempt
stage's own errors still pass untranslated.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from extproc import wire
from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="claude").start()
    fp.set_behaviour(response_headers={wire.ANSWERED_HEADER: "1"})
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + http_route_yaml(route_rule("/v1", "claude"))
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: claude, namespace: default}}
spec:
  ai:
    provider:
      anthropic: {{model: claude-fixed}}
      host: 127.0.0.1
      port: {provider.port}
  policies:
    auth: {{key: sk-ant-test}}
""",
    )
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_a_provider_sending_the_marker_is_still_translated(
    gateway: GatewayProcess, provider: FakeProviderThread
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}])
    reply = raw.parse()
    assert reply.object == "chat.completion"  # OpenAI's shape: translated from Anthropic's
    assert reply.choices[0].message.content
    assert wire.ANSWERED_HEADER not in raw.headers
    assert provider.requests[-1].path == "/v1/messages"


def test_a_provider_error_with_the_marker_is_still_translated(
    gateway: GatewayProcess, provider: FakeProviderThread
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-behaviour": '{"error_status": 429}'},
        )
    body = err.value.response.json()
    assert "type" not in body and "message" in body["error"]  # OpenAI's error object, not Anthropic's envelope
    assert wire.ANSWERED_HEADER not in err.value.response.headers


def test_the_attempt_stage_own_errors_still_pass_untranslated(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="m", input="hi")
    assert err.value.code == "unsupported_operation"
    assert wire.ANSWERED_HEADER not in err.value.response.headers
