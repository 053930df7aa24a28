"""Amazon Bedrock as a provider: the fake's Bedrock dialect alone, then the openai SDK through the real gateway.

The fake verifies every request's SigV4 signature with botocore over the bytes
it received, so a passing request proves the gateway signed the translated
body, path and host exactly as they left Envoy. Credentials come from a
Secret (`policies.auth.aws.secretRef`); a second backend uses temporary
credentials (session token) and a third a wrong secret key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from botocore.credentials import ReadOnlyCredentials
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from extproc.credentials import aws as credentials_aws
from extproc.eventstream import EventStreamDecoder
from fakeprovider import FakeProviderThread
from fakeprovider import bedrock_wire as bw
from fakeprovider.dialects.bedrock import MIDSTREAM_MESSAGE, MIDSTREAM_THROTTLE
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
CLIENT_KEY = "sk-client-own-key-must-not-leak"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for one city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="bedrock").start()
    yield fp
    fp.stop()


@pytest.fixture(autouse=True)
def _fresh(provider: FakeProviderThread) -> None:
    provider.clear()
    provider.reset_behaviour()


# --- the fake's dialect on its own ---------------------------------------------------------


def post(
    provider: FakeProviderThread, path: str, body: dict[str, Any], *, secret: str = bw.TEST_SECRET_KEY
) -> httpx.Response:
    raw = orjson.dumps(body)
    authority = f"127.0.0.1:{provider.port}"
    headers = {"content-type": "application/json"}
    headers |= credentials_aws.sign(
        credentials=ReadOnlyCredentials(bw.TEST_ACCESS_KEY, secret, None),
        region="us-east-1",
        method="POST",
        authority=authority,
        path=path,
        headers=headers,
        body=raw,
    )
    return httpx.post(f"http://{authority}{path}", content=raw, headers=headers, timeout=10)


CONVERSE = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"


def test_fake_converse_signed_request(provider: FakeProviderThread) -> None:
    body = {"system": [{"text": "be brief"}], "messages": [{"role": "user", "content": [{"text": "hi there"}]}]}
    r = post(provider, CONVERSE, body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["output"]["message"]["content"] == [{"text": "Hello from bedrock: hi there"}]
    assert doc["stopReason"] == "end_turn"
    assert doc["usage"] == {
        "inputTokens": 2,
        "cacheReadInputTokens": 2,
        "outputTokens": 5,
        "totalTokens": 9,
    }
    assert r.headers["x-amzn-requestid"]


def test_fake_rejects_bad_signatures(provider: FakeProviderThread) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    r = post(provider, CONVERSE, body, secret="not-the-secret")
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    r = httpx.post(f"{provider.url}{CONVERSE}", json=body, timeout=10)
    assert r.status_code == 403 and r.json() == {"message": "Missing Authentication Token"}


def test_fake_validates_like_converse(provider: FakeProviderThread) -> None:
    r = post(provider, CONVERSE, {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]})
    assert r.status_code == 400 and r.headers["x-amzn-errortype"].startswith("ValidationException")
    r = post(provider, CONVERSE, {"messages": [{"role": "user", "content": [{"text": " "}]}]})
    assert r.status_code == 400 and "blank" in r.json()["message"]


def test_fake_stream_is_a_valid_event_stream_with_a_tool_use(provider: FakeProviderThread) -> None:
    body = {
        "messages": [{"role": "user", "content": [{"text": "weather in Paris?"}]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
    }
    r = post(provider, CONVERSE.replace("/converse", "/converse-stream"), body)
    assert r.headers["content-type"] == bw.EVENTSTREAM_CONTENT_TYPE
    decoder = EventStreamDecoder()
    messages = decoder.feed(r.content)
    assert decoder.pending == 0 and decoder.error is None
    kinds = [m.event_type for m in messages]
    assert kinds == ["messageStart", "contentBlockStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    fragments = [orjson.loads(m.payload)["delta"]["toolUse"]["input"] for m in messages[2:5]]
    assert json.loads("".join(fragments)) == {"city": "Paris"}


def test_fake_titan_embeddings(provider: FakeProviderThread) -> None:
    r = post(provider, "/model/amazon.titan-embed-text-v2%3A0/invoke", {"inputText": "a b c", "dimensions": 256})
    assert r.status_code == 200 and len(r.json()["embedding"]) == 256 and r.json()["inputTextTokenCount"] == 3


def test_fake_injected_error_in_bedrock_shape(provider: FakeProviderThread) -> None:
    provider.set_behaviour(error_status=429, retry_after=2)
    r = post(provider, CONVERSE, {"messages": [{"role": "user", "content": [{"text": "x"}]}]})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.headers["x-amzn-errortype"].startswith("ThrottlingException") and "message" in r.json()


# --- through the gateway -------------------------------------------------------------------

ROUTE = http_route_yaml(
    route_rule("/v1", "bedrock"),
    route_rule("/session", "bedrock-session"),
    route_rule("/bad", "bedrock-bad"),
    name="bedrock",
)
BACKENDS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: bedrock, namespace: default}}
spec:
  ai:
    provider:
      bedrock: {{region: us-west-2, guardrail: {{identifier: gr-test, version: "2"}}}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      aws: {{secretRef: {{name: aws-keys}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: bedrock-session, namespace: default}}
spec:
  ai:
    provider:
      bedrock: {{model: {claude}}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      aws: {{secretRef: {{name: aws-session}}, region: eu-central-1}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: bedrock-bad, namespace: default}}
spec:
  ai:
    provider:
      bedrock: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      aws: {{secretRef: {{name: aws-wrong}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-keys, namespace: default}}
stringData: {{accessKey: {key}, secretKey: {secret}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-session, namespace: default}}
stringData: {{accessKey: {skey}, secretKey: {ssecret}, sessionToken: {token}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-wrong, namespace: default}}
stringData: {{accessKey: {key}, secretKey: not-the-secret}}
"""


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + ROUTE
        + BACKENDS.format(
            upstream=provider.port,
            claude=CLAUDE,
            key=bw.TEST_ACCESS_KEY,
            secret=bw.TEST_SECRET_KEY,
            skey=bw.TEST_SESSION_ACCESS_KEY,
            ssecret=bw.TEST_SESSION_SECRET_KEY,
            token=bw.TEST_SESSION_TOKEN,
        ),
    )
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def client_for(gateway: GatewayProcess, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + prefix, api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.integration
def test_chat_is_translated_signed_and_answered(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    resp = client_for(gateway).chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello bedrock world"}],
        max_tokens=64,
        temperature=0.5,
    )
    assert resp.choices[0].message.content == "Hello from bedrock: hello bedrock world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == CLAUDE
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3 + 2, 6)  # words + cached system words
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 2
    [rec] = provider.requests
    assert rec.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert rec.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={bw.TEST_ACCESS_KEY}/")
    assert "/us-west-2/bedrock/aws4_request" in rec.headers["authorization"]
    assert CLIENT_KEY not in json.dumps(rec.headers)
    assert rec.json == {
        "messages": [{"role": "user", "content": [{"text": "hello bedrock world"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.5},
        "guardrailConfig": {"guardrailIdentifier": "gr-test", "guardrailVersion": "2"},
    }


@pytest.mark.integration
def test_stream_with_usage(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    provider.set_behaviour(chunks=4)
    chunks = list(
        client_for(gateway).chat.completions.create(
            model=CLAUDE,
            messages=[{"role": "user", "content": "stream these words please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from bedrock: stream these words please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    [usage] = [c.usage for c in chunks if c.usage]
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 7)
    assert provider.requests[-1].path.endswith("/converse-stream")


@pytest.mark.integration
def test_stream_without_usage_hides_it(gateway: GatewayProcess) -> None:
    chunks = list(
        client_for(gateway).chat.completions.create(
            model=CLAUDE, messages=[{"role": "user", "content": "no usage"}], stream=True
        )
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(gateway: GatewayProcess, provider: FakeProviderThread, stream: bool) -> None:
    client = client_for(gateway)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL], stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += delta.id or ""
                    slot["name"] += (delta.function and delta.function.name) or ""
                    slot["arguments"] += (delta.function and delta.function.arguments) or ""
        [assembled] = calls.values()
        call_id, name, arguments = assembled["id"], assembled["name"], assembled["arguments"]
    else:
        resp = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL])
        finish = resp.choices[0].finish_reason
        [tool_call] = resp.choices[0].message.tool_calls or []
        assert isinstance(tool_call, ChatCompletionMessageFunctionToolCall)
        call_id, name, arguments = tool_call.id, tool_call.function.name, tool_call.function.arguments
    assert finish == "tool_calls" and name == "get_weather" and json.loads(arguments) == {"city": "Paris"}
    first = provider.requests[-1].json
    assert first["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "18C and sunny"},
    ]
    resp = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].message.content == "Hello from bedrock: 18C and sunny"
    second = provider.requests[-1].json
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": call_id, "name": "get_weather", "input": {"city": "Paris"}}}],
    }
    assert second["messages"][2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": call_id, "content": [{"text": "18C and sunny"}]}}],
    }


@pytest.mark.integration
def test_embeddings_titan(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    client = client_for(gateway)
    emb = client.embeddings.create(model=TITAN, input="embed these words", dimensions=256)
    assert len(emb.data) == 1 and len(emb.data[0].embedding) == 256
    assert emb.usage.prompt_tokens == 3
    rec = provider.requests[-1]
    assert rec.path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert rec.json == {"inputText": "embed these words", "dimensions": 256, "normalize": True}
    floats = client.embeddings.create(model=TITAN, input="x", encoding_format="float")
    assert len(floats.data[0].embedding) == 1024


@pytest.mark.integration
def test_session_credentials_and_model_override(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    resp = client_for(gateway, "/session/v1").chat.completions.create(
        model="anything", messages=[{"role": "user", "content": "hi"}]
    )
    assert resp.choices[0].message.content == "Hello from bedrock: hi" and resp.model == CLAUDE
    rec = provider.requests[-1]
    assert rec.headers["x-amz-security-token"] == bw.TEST_SESSION_TOKEN
    assert "/eu-central-1/bedrock/aws4_request" in rec.headers["authorization"]
    assert rec.path.startswith("/model/anthropic.claude-3-5-haiku")


@pytest.mark.integration
def test_wrong_secret_is_bedrocks_403_in_openai_schema(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client_for(gateway, "/bad/v1").chat.completions.create(
            model=CLAUDE, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 403
    assert info.value.code == "InvalidSignatureException"
    assert "signature" in info.value.message


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, openai.BadRequestError, "ValidationException"),
        (403, openai.PermissionDeniedError, "AccessDeniedException"),
        (404, openai.NotFoundError, "ResourceNotFoundException"),
        (429, openai.RateLimitError, "ThrottlingException"),
        (500, openai.InternalServerError, "InternalServerException"),
        (503, openai.InternalServerError, "ServiceUnavailableException"),
    ],
)
def test_provider_errors_are_reshaped(
    gateway: GatewayProcess, provider: FakeProviderThread, status: int, error: type[openai.APIStatusError], code: str
) -> None:
    provider.set_behaviour(error_status=status, error_count=1, retry_after=3, error_message="nope from bedrock")
    with pytest.raises(error) as info:
        client_for(gateway).chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.code == code
    assert isinstance(info.value.body, dict) and info.value.body["message"] == "nope from bedrock"
    if status == 429:
        assert info.value.response.headers["retry-after"] == "3"


@pytest.mark.integration
def test_cut_stream_raises_in_the_sdk(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    """A reset mid-stream: Envoy resets the client (or answers 502 before the headers). Never a clean finish."""
    provider.set_behaviour(chunks=6, cut_stream_after_chunks=4, error_count=1, chunk_interval_ms=20)
    stream = client_for(gateway).chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "a long answer please"}], stream=True
    )
    with pytest.raises((openai.APIError, httpx.TransportError)):
        for chunk in stream:
            assert not any(c.finish_reason for c in chunk.choices)


@pytest.mark.integration
def test_exception_frame_mid_stream_raises_the_providers_error(gateway: GatewayProcess) -> None:
    stream = client_for(gateway).chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": f"go {MIDSTREAM_THROTTLE} now please"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match=MIDSTREAM_MESSAGE) as info:
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
            assert not any(c.finish_reason for c in chunk.choices)
    assert received  # the part before the exception arrived
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "throttlingException"


@pytest.mark.integration
def test_operations_bedrock_has_no_pair_for_are_a_400(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    with pytest.raises(openai.BadRequestError, match="not available on provider 'bedrock'"):
        client_for(gateway).completions.create(model=CLAUDE, prompt="x")
    with pytest.raises(openai.BadRequestError, match="bedrock_invoke"):
        client_for(gateway).embeddings.create(model="cohere.embed-english-v3", input="x")
    assert provider.requests == []


@pytest.mark.integration
def test_http_image_url_is_a_400(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client_for(gateway).chat.completions.create(
            model=CLAUDE,
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
            ],
        )
    assert "data: URL" in info.value.message
    assert provider.requests == []


@pytest.mark.integration
def test_metrics_equal_usage_including_cache(gateway: GatewayProcess) -> None:
    client = client_for(gateway)
    model = "anthropic.claude-metrics-v1:0"
    totals = {"input": 0, "output": 0, "input_cache_read": 0, "input_cache_write": 0}
    resp = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "three system words"}, {"role": "user", "content": "weather now?"}],
        tools=[WEATHER_TOOL],
    )
    assert resp.usage is not None
    totals["input"] += resp.usage.prompt_tokens
    totals["output"] += resp.usage.completion_tokens
    totals["input_cache_read"] += 3
    totals["input_cache_write"] += 5  # the tool description's words (the fake's cache rule)
    assert resp.usage.prompt_tokens == 2 + 3 + 5
    chunks = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "streamed words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    [usage] = [c.usage for c in chunks if c.usage]
    totals["input"] += usage.prompt_tokens
    totals["output"] += usage.completion_tokens
    totals["input_cache_read"] += 1

    def sums() -> dict[str, float]:
        out = {}
        for line in gateway.metrics().splitlines():
            if line.startswith("llmgw_gen_ai_client_token_usage_sum{") and f'gen_ai_request_model="{model}"' in line:
                ttype = line.split('gen_ai_token_type="')[1].split('"')[0]
                out[ttype] = float(line.rsplit(" ", 1)[1])
        return out

    got = wait_until(lambda: sums() if sums().get("input") == totals["input"] else None, what="metrics")
    assert got == totals
    assert 'gen_ai_provider_name="bedrock"' in gateway.metrics()
    assert bw.TEST_SECRET_KEY not in gateway.metrics() + gateway.log() + gateway.config_dump()
