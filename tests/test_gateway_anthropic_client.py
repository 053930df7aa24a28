"""The anthropic SDK through the real gateway to the fake OpenAI-compatible provider.

An `AIBackend` with `openai: {}` behind `PathPrefix /v1`: the client speaks
Anthropic Messages, the provider receives chat completions. Asserts both sides:
what the provider received (path, injected key, translated messages, tools,
include_usage) and what the SDK got (text, stream, usage, typed errors), plus
the token metrics. The fake provider does not emit tool calls, so the tool
round trip is asserted on the request side here and on the response side in
the golden tests (tests/test_translate_anthropic_openai.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration
CLIENT_KEY = "sk-ant-client-own-key-must-not-leak"
PROVIDER_KEY = "sk-provider-secret"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=provider.port, key=PROVIDER_KEY))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def client(gateway: GatewayProcess, provider: FakeProviderThread) -> anthropic.Anthropic:
    provider.clear()
    provider.reset_behaviour()
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)


def test_create_text(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    msg = client.messages.create(
        model="claude-opus-4-7",
        max_tokens=100,
        system="Be brief",
        messages=[{"role": "user", "content": "hello gateway world"}],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5, "top_k": 5},  # no longer typed by this SDK, still sent by older clients
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from fake: hello gateway world"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.model == "claude-opus-4-7"
    # the fake counts words of every message (system included) and of the reply
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (5, 6, 0)
    [rec] = provider.requests
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert CLIENT_KEY not in json.dumps(rec.headers)
    assert rec.json == {
        "model": "claude-opus-4-7",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hello gateway world"}],
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "user": "u-1",
    }


def test_stream_text_and_final_usage(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    provider.set_behaviour(chunks=6)
    with client.messages.stream(
        model="claude-haiku", max_tokens=50, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from fake: stream please"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)
    [rec] = provider.requests
    assert rec.json["stream"] is True and rec.json["stream_options"] == {"include_usage": True}


def test_raw_stream_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="m", max_tokens=20, stream=True, messages=[{"role": "user", "content": "one two three"}]
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}


def test_tool_round_trip_request_is_translated(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    weather: Any = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    msg = client.messages.create(
        model="m",
        max_tokens=100,
        tools=[weather],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "And so?"},
                ],
            },
        ],
    )
    assert msg.content[0].text == "Hello from fake: And so?"  # type: ignore[union-attr]
    [rec] = provider.requests
    assert rec.json["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": weather["input_schema"],
            },
        }
    ]
    assert rec.json["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert rec.json["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "user", "content": "And so?"},
    ]


@pytest.mark.parametrize(
    ("status", "error", "etype"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_provider_errors_in_anthropic_schema(
    client: anthropic.Anthropic, provider: FakeProviderThread, status: int, error: type[Exception], etype: str
) -> None:
    provider.set_behaviour(error_status=status, error_count=1)
    with pytest.raises(error) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    exc = info.value
    assert isinstance(exc, anthropic.APIStatusError) and exc.status_code == status
    assert exc.body["type"] == "error" and exc.body["error"]["type"] == etype  # type: ignore[index]
    assert exc.response.headers["content-type"].startswith("application/json")


def test_rate_limit_keeps_retry_after(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    provider.set_behaviour(error_status=429, error_count=1, retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    # the next request succeeds (error_count=1)
    ok = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "again"}])
    assert ok.content[0].text == "Hello from fake: again"  # type: ignore[union-attr]


def test_streamed_request_error_is_typed(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    provider.set_behaviour(error_status=429, error_count=1, retry_after=1)
    with (
        pytest.raises(anthropic.RateLimitError),
        client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream,
    ):
        stream.get_final_message()


def test_cut_stream_raises_in_the_sdk(client: anthropic.Anthropic, provider: FakeProviderThread) -> None:
    """The fake aborts the connection (TCP reset): Envoy fails the request, whatever got through."""
    http: Any = vars(anthropic._base_client).get("httpx2") or vars(anthropic._base_client)["httpx"]
    provider.set_behaviour(cut_stream_after_chunks=2, error_count=1, chunks=6)
    received: list[str] = []
    with (
        pytest.raises((anthropic.APIError, http.TransportError)),
        client.messages.stream(
            model="m", max_tokens=50, messages=[{"role": "user", "content": "cut me off please"}]
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert "".join(received) != "Hello from fake: cut me off please"


class _EndsEarly(BaseHTTPRequestHandler):
    """A provider whose stream ends cleanly (terminating chunk) but before finish_reason and [DONE]."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        head = '{"id":"chatcmpl-early","object":"chat.completion.chunk","created":1,"model":"early","choices":'
        for delta in ('{"role":"assistant","content":""}', '{"content":"Hello"}'):
            event = f'data: {head}[{{"index":0,"delta":{delta},"finish_reason":null}}]}}\n\n'.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


def test_stream_ended_before_finish_raises_with_text_so_far(gateway_factory: type[GatewayProcess]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndsEarly)
    thread = threading.Thread(target=server.serve_forever, name="ends-early", daemon=True)
    thread.start()
    try:
        gw = gateway_factory(workers=1)
        gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=server.server_address[1]))
        gw.start()
        client = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)
        received: list[str] = []
        with (
            pytest.raises(anthropic.APIStatusError, match="ended before the response was complete"),
            client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream,
        ):
            received.extend(stream.text_stream)
        assert received == ["Hello"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_token_metrics(gateway: GatewayProcess, client: anthropic.Anthropic) -> None:
    model = "anthropic-metrics-model"
    totals = {"input": 0, "output": 0}
    for i in range(2):
        msg = client.messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "one two " * (i + 1)}]
        )
        totals["input"] += msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
        totals["output"] += msg.usage.output_tokens
    with client.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "streamed words"}]
    ) as stream:
        final = stream.get_final_message()
    totals["input"] += final.usage.input_tokens
    totals["output"] += final.usage.output_tokens

    def sums() -> dict[str, float]:
        out = {}
        for line in gateway.metrics().splitlines():
            if line.startswith("llmgw_gen_ai_client_token_usage_sum{") and f'gen_ai_request_model="{model}"' in line:
                assert 'gen_ai_operation_name="chat"' in line and 'gen_ai_provider_name="openai"' in line
                ttype = line.split('gen_ai_token_type="')[1].split('"')[0]
                out[ttype] = float(line.rsplit(" ", 1)[1])
        return out

    got = wait_until(lambda: sums() if sums().get("output") == totals["output"] else None, what="token metrics")
    assert got["input"] == totals["input"]
