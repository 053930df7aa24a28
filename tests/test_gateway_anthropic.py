"""Anthropic as a provider, end to end: the official SDKs through the real gateway to the fake's Anthropic dialect.

The openai SDK talks to an Anthropic backend (translated both ways: chat, streams,
a tool-call round trip, images, JSON output, reasoning), and the anthropic SDK
talks to one through the passthrough pair. Each test asserts both sides: what the
provider received (path, the Secret's key in `x-api-key`, `anthropic-version`, no
client key, the backend's model override, the exact translated body) and what
the client got, plus the token metrics (cached tokens included), provider errors
reshaped into the client's schema with the same status, and cut streams raising.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration
# Transport errors as the SDKs raise them (they may ship their own fork of httpx).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    {httpx.HTTPError, *(vars(m).get("httpx2", httpx).HTTPError for m in (openai._base_client, anthropic._base_client))}
)
CLIENT_KEY = "sk-client-own-key-must-not-leak"
PROVIDER_KEY = "sk-ant-provider-secret"
OVERRIDE = "claude-override"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def manifests(*, port: int, upstream_port: int) -> str:
    """`/v1` -> backend `claude` (model override); `/plain` (prefix rewritten to `/`) -> `claude-plain`."""
    backends = ""
    for name, model in (("claude", f"model: {OVERRIDE}"), ("claude-plain", "")):
        backends += f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      anthropic: {{{model}}}
      host: 127.0.0.1
      port: {upstream_port}
  policies:
    auth:
      secretRef: {{name: claude-key}}
"""
    route = http_route_yaml(
        route_rule("/v1", "claude"), route_rule("/plain", "claude-plain", rewrite=True), name="claude"
    )
    return (
        gateway_yaml(port=port)
        + route
        + backends
        + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: claude-key, namespace: default}}
stringData:
  Authorization: {PROVIDER_KEY}
"""
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", manifests(port=gw.port, upstream_port=provider.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def fake(provider: FakeProviderThread) -> Iterator[FakeProviderThread]:
    provider.clear()
    provider.reset_behaviour()
    yield provider
    provider.reset_behaviour()


@pytest.fixture
def oai(gateway: GatewayProcess, fake: FakeProviderThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def claude(gateway: GatewayProcess, fake: FakeProviderThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + "/plain", api_key=CLIENT_KEY, max_retries=0)


def upstream_checks(rec: Any) -> None:
    """What every request to Anthropic must look like, whoever the client was."""
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == PROVIDER_KEY
    assert rec.headers.get("anthropic-version")
    assert "authorization" not in rec.headers
    assert CLIENT_KEY not in json.dumps(rec.headers) and CLIENT_KEY not in rec.body


# --- openai SDK -> Anthropic -----------------------------------------------------------------


def test_chat_is_translated_both_ways(oai: openai.OpenAI, fake: FakeProviderThread) -> None:
    resp = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello claude world"}],
        temperature=0.5,
        stop=["NEVER"],
        seed=3,
    )
    assert resp.choices[0].message.content == "Hello from fake: hello claude world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == OVERRIDE and resp.object == "chat.completion"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 6)
    [rec] = fake.requests
    upstream_checks(rec)
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.json == {
        "model": OVERRIDE,
        "max_tokens": 4096,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello claude world"}]}],
        "stop_sequences": ["NEVER"],
        "temperature": 0.5,
    }


def test_stream_hides_usage_unless_asked(oai: openai.OpenAI, fake: FakeProviderThread) -> None:
    fake.set_behaviour(chunks=4)
    messages: Any = [{"role": "user", "content": "stream please"}]
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from fake: stream please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)
    assert fake.requests[-1].json["stream"] is True and "stream_options" not in fake.requests[-1].json
    upstream_checks(fake.requests[-1])

    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    [usage] = [c.usage for c in chunks if c.usage]
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 5)
    assert chunks[-1].choices == []


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(oai: openai.OpenAI, fake: FakeProviderThread, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first: Any
    if stream:
        with oai.chat.completions.stream(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]) as s:
            first = s.get_final_completion()
    else:
        first = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert fake.requests[-1].json["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 22C"})
    second = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello from fake: sunny, 22C"
    assert second.choices[0].finish_reason == "stop"
    sent = fake.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}} in sent[1]["content"]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 22C"}]


def test_image_urls_become_image_blocks(oai: openai.OpenAI, fake: FakeProviderThread) -> None:
    content: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
    resp = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "Hello from fake: what is this"
    assert fake.requests[-1].json["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
    ]


def test_json_schema_output_and_reasoning(oai: openai.OpenAI, fake: FakeProviderThread) -> None:
    schema: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    resp = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "pick a city"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content or "") == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "stop" and not resp.choices[0].message.tool_calls
    sent = fake.requests[-1].json
    assert sent["tool_choice"] == {"type": "tool", "name": "llmgw_json_response"}
    assert sent["tools"][0]["input_schema"] == schema

    resp = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "think hard"}], reasoning_effort="low"
    )
    assert resp.choices[0].message.content == "Hello from fake: think hard"
    assert getattr(resp.choices[0].message, "reasoning_content", None) == "Thinking about: think hard"
    assert fake.requests[-1].json["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def _token_sums(gateway: GatewayProcess, model: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in gateway.metrics().splitlines():
        if line.startswith("llmgw_gen_ai_client_token_usage_sum{") and f'gen_ai_request_model="{model}"' in line:
            token_type = line.split('gen_ai_token_type="')[1].split('"')[0]
            out[token_type] = out.get(token_type, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_metrics_count_cached_tokens_once(
    gateway: GatewayProcess, oai: openai.OpenAI, fake: FakeProviderThread
) -> None:
    """The fake reports the cache_control-marked system prompt as a cache read, outside `input_tokens`."""
    model = "metrics-claude"
    system: Any = [{"type": "text", "text": "a long stable preamble", "cache_control": {"type": "ephemeral"}}]
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": "count these words"}]
    resp = oai.chat.completions.create(model=model, messages=messages)
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert (resp.usage.prompt_tokens, resp.usage.prompt_tokens_details.cached_tokens) == (7, 4)
    upstream_usage = fake.requests[-1]
    assert upstream_usage.json["system"] == system  # cache_control reached Anthropic
    stream = oai.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    [usage] = [c.usage for c in stream if c.usage]
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 6)
    expected = {"input": 14.0, "output": 12.0, "input_cache_read": 8.0}
    got = wait_until(lambda: _token_sums(gateway, model) if _token_sums(gateway, model).get("input") == 14 else None)
    assert {k: got.get(k) for k in expected} == expected
    assert got.get("input_cache_write", 0.0) == 0.0
    text = gateway.metrics()
    assert 'gen_ai_provider_name="anthropic"' in text and 'backend="default/claude"' in text
    assert PROVIDER_KEY not in text


# --- errors and cuts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (401, openai.AuthenticationError, "authentication_error"),
        (429, openai.RateLimitError, "rate_limit_error"),
        (500, openai.InternalServerError, "api_error"),
        (529, openai.InternalServerError, "overloaded_error"),
    ],
)
def test_provider_errors_in_openai_schema(
    oai: openai.OpenAI, fake: FakeProviderThread, status: int, exc: type[openai.APIStatusError], etype: str
) -> None:
    fake.set_behaviour(error_status=status, retry_after=2 if status == 429 else None)
    with pytest.raises(exc) as info:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    err = info.value
    assert err.status_code == status
    assert isinstance(err.body, dict) and err.body["code"] == etype
    assert f"HTTP {status} from fake provider fake" in err.body["message"]
    if status == 429:
        assert err.response.headers["retry-after"] == "2"


def test_cut_stream_raises_in_openai_sdk(oai: openai.OpenAI, fake: FakeProviderThread) -> None:
    """Cut before Envoy forwarded the headers: a 502; after: a broken stream. Never a clean finish."""
    fake.set_behaviour(cut_stream_after_chunks=6, chunks=6, chunk_interval_ms=20)
    with pytest.raises((openai.APIError, *TRANSPORT_ERRORS)):
        for chunk in oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "cut me off"}], stream=True
        ):
            assert not chunk.choices or chunk.choices[0].finish_reason is None


# --- anthropic SDK -> Anthropic (passthrough) -------------------------------------------------


def test_anthropic_sdk_passthrough_json(claude: anthropic.Anthropic, fake: FakeProviderThread) -> None:
    msg = claude.messages.create(
        model="claude-e2e",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hi passthrough"}],
        metadata={"user_id": "u1"},
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from fake: hi passthrough"
    assert msg.model == "claude-e2e" and msg.usage.input_tokens == 4
    [rec] = fake.requests
    upstream_checks(rec)
    assert rec.json == {
        "model": "claude-e2e",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi passthrough"}],
        "metadata": {"user_id": "u1"},
    }


def test_anthropic_sdk_passthrough_stream_and_tools(claude: anthropic.Anthropic, fake: FakeProviderThread) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with claude.messages.stream(
        model="claude-e2e",
        max_tokens=100,
        tools=tools,
        messages=[{"role": "user", "content": "weather please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from fake: weather please"
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"
    assert final.content[-1].input == {"city": "Paris"}
    upstream_checks(fake.requests[-1])
    assert fake.requests[-1].json["stream"] is True


def test_anthropic_sdk_model_override_and_metrics(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)
    msg = client.messages.create(
        model="passthrough-metrics", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    )
    assert msg.model == OVERRIDE and fake.requests[-1].json["model"] == OVERRIDE
    got = wait_until(lambda: _token_sums(gateway, "passthrough-metrics") or None, what="passthrough token metrics")
    assert got["input"] == msg.usage.input_tokens and got["output"] == msg.usage.output_tokens


def test_anthropic_sdk_errors_and_cut(claude: anthropic.Anthropic, fake: FakeProviderThread) -> None:
    fake.set_behaviour(error_status=529)
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"
    fake.set_behaviour(error_status=None, cut_stream_after_chunks=3)
    with (
        pytest.raises((anthropic.APIError, *TRANSPORT_ERRORS)),
        claude.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "cut"}]) as stream,
    ):
        for _ in stream:
            pass
