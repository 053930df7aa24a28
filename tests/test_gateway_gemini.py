"""The openai SDK through the real gateway to Gemini: AI Studio (API key) and Vertex AI (service account).

One Gateway, two routes: `/gemini/...` -> an AIBackend of kind `gemini` (key from a Secret, sent
as `x-goog-api-key`), `/vertex/...` -> kind `vertexai` with `policies.auth.gcp` holding a
service-account key generated at test time, whose `token_uri` is a local OAuth endpoint that
verifies the JWT signature. Both point at the fake provider's Gemini dialect.

Asserts both sides: the exact translated request (path, headers, body) the provider received,
what the SDK got (content, tool calls, usage, errors with their status and Retry-After, a cut
stream raising), and that the metrics equal the usage the client saw.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from fakeprovider import openai_wire as wire
from tests.gcp_fake import CLIENT_EMAIL, FakeTokenServer
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration
CLIENT_KEY = "sk-client-own-key-must-not-leak"
GEMINI_KEY = "gemini-provider-secret"
VERTEX = "/v1/projects/test-proj/locations/us-central1/publishers/google/models"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_DECL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def manifests(*, port: int, upstream: int, credentials_json: str) -> str:
    encoded = base64.b64encode(credentials_json.encode()).decode()
    route = http_route_yaml(route_rule("/gemini", "gemini"), route_rule("/vertex", "vertex"), name="google")
    return (
        gateway_yaml(port=port)
        + route
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: gemini, namespace: default}}
spec:
  ai:
    provider:
      gemini: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      secretRef: {{name: gemini-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gemini-key, namespace: default}}
stringData:
  Authorization: {GEMINI_KEY}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: vertex, namespace: default}}
spec:
  ai:
    provider:
      vertexai: {{projectId: test-proj, region: us-central1}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      gcp:
        secretRef: {{name: gcp-sa}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gcp-sa, namespace: default}}
data:
  credentials.json: {encoded}
"""
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeTokenServer]:
    server = FakeTokenServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread, oauth: FakeTokenServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    sa = json.dumps(oauth.service_account())
    gw.write("gw.yaml", manifests(port=gw.port, upstream=provider.port, credentials_json=sa))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def gemini(gateway: GatewayProcess, provider: FakeProviderThread) -> openai.OpenAI:
    provider.clear()
    provider.reset_behaviour()
    return openai.OpenAI(base_url=gateway.url + "/gemini/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def vertex(gateway: GatewayProcess, provider: FakeProviderThread) -> openai.OpenAI:
    provider.clear()
    provider.reset_behaviour()
    return openai.OpenAI(base_url=gateway.url + "/vertex/v1", api_key=CLIENT_KEY, max_retries=0)


def _assert_gemini_headers(headers: dict[str, str]) -> None:
    assert headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in headers and CLIENT_KEY not in json.dumps(headers)
    assert headers["content-type"] == "application/json"


# --- AI Studio -------------------------------------------------------------------------


def test_chat(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    resp = gemini.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello gemini world"}],
        max_tokens=50,
        temperature=0.1,
        stop=["\n\n"],
        user="not-for-gemini",
    )
    assert resp.choices[0].message.content == "Hello from fake: hello gemini world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gemini-2.5-flash" and resp.object == "chat.completion"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 6)
    [rec] = provider.requests
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    _assert_gemini_headers(rec.headers)
    assert rec.json == {
        "contents": [{"role": "user", "parts": [{"text": "hello gemini world"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.1, "stopSequences": ["\n\n"]},
    }


def test_stream_with_and_without_usage(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    provider.set_behaviour(chunks=4)
    messages: Any = [{"role": "user", "content": "stream to me please"}]
    chunks = list(
        gemini.chat.completions.create(
            model="gemini-2.5-flash", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake: stream to me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 7)
    plain = list(gemini.chat.completions.create(model="gemini-2.5-flash", messages=messages, stream=True))
    assert all(c.choices and c.usage is None for c in plain)
    first, second = provider.requests
    assert first.path == second.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert first.json == second.json == {"contents": [{"role": "user", "parts": [{"text": "stream to me please"}]}]}
    _assert_gemini_headers(first.headers)


def test_tool_call_round_trip(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = gemini.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    second = gemini.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert second.choices[0].message.content == "Hello from fake: What's the weather in Paris?"
    sent = provider.requests[-1].json
    assert sent == {
        "contents": [
            {"role": "user", "parts": [{"text": "What's the weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]},
        ],
        "tools": [{"functionDeclarations": [WEATHER_DECL]}],
    }


def test_streamed_tool_call(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    stream = gemini.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "weather in Paris, streamed"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(delta_call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta_call.id or ""
            slot["name"] += (delta_call.function.name or "") if delta_call.function else ""
            slot["arguments"] += (delta_call.function.arguments or "") if delta_call.function else ""
        reasons.append(chunk.choices[0].finish_reason)
    assert list(calls) == [0] and calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert reasons[-1] == "tool_calls"
    assert provider.requests[-1].json["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_images(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    content: Any = [
        {"type": "text", "text": "describe these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    resp = gemini.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "Hello from fake: describe these"
    assert provider.requests[-1].json["contents"][0]["parts"] == [
        {"text": "describe these"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
    ]


def test_legacy_completions(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    resp = gemini.completions.create(model="gemini-2.5-flash", prompt="say this", max_tokens=4)
    assert resp.choices[0].text == "Hello from fake: say"
    assert resp.choices[0].finish_reason == "length" and resp.object == "text_completion"
    rec = provider.requests[-1]
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.json == {
        "contents": [{"role": "user", "parts": [{"text": "say this"}]}],
        "generationConfig": {"maxOutputTokens": 4},
    }


def test_embeddings(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    resp = gemini.embeddings.create(model="gemini-embedding-001", input=["first text", "second"])
    assert [d.index for d in resp.data] == [0, 1]
    for item, text in zip(resp.data, ["first text", "second"], strict=True):
        assert item.embedding == pytest.approx(wire.embedding_vector(text, 8))
    rec = provider.requests[-1]
    assert rec.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    _assert_gemini_headers(rec.headers)
    assert rec.json == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "first text"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "second"}]}},
        ]
    }
    raw = httpx.post(
        f"{gemini.base_url}embeddings",
        json={"model": "gemini-embedding-001", "input": "x", "encoding_format": "base64", "dimensions": 4},
        timeout=10,
    ).json()
    vector = raw["data"][0]["embedding"]
    if isinstance(vector, str):  # base64 needs the client's encoding_format at response time
        vector = list(struct.unpack("<4f", base64.b64decode(vector)))
    assert vector == pytest.approx(wire.embedding_vector("x", 4))


@pytest.mark.parametrize(
    ("status", "error_type", "code", "exc"),
    [
        (400, "invalid_request_error", "invalid_argument", openai.BadRequestError),
        (401, "authentication_error", "unauthenticated", openai.AuthenticationError),
        (403, "permission_error", "permission_denied", openai.PermissionDeniedError),
        (404, "not_found_error", "not_found", openai.NotFoundError),
        (429, "rate_limit_error", "resource_exhausted", openai.RateLimitError),
        (500, "server_error", "internal", openai.InternalServerError),
        (503, "server_error", "unavailable", openai.InternalServerError),
    ],
)
def test_provider_errors_in_openai_schema(
    gemini: openai.OpenAI, provider: FakeProviderThread, status: int, error_type: str, code: str, exc: type
) -> None:
    provider.set_behaviour(error_status=status, error_count=1, retry_after=7 if status == 429 else None)
    with pytest.raises(exc) as caught:
        gemini.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    err = caught.value
    assert err.status_code == status
    assert err.body == {
        "message": f"Injected fault: HTTP {status} from fake provider fake",
        "type": error_type,
        "code": code,
        "param": None,
    }
    if status == 429:
        assert err.response.headers["retry-after"] == "7"


def test_stream_cut_raises(gemini: openai.OpenAI, provider: FakeProviderThread) -> None:
    provider.set_behaviour(chunks=6, cut_stream_after_chunks=3, error_count=1, chunk_interval_ms=30)
    seen: list[Any] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in gemini.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "one two three four"}], stream=True
        ):
            seen.append(chunk)
    assert all(c.choices[0].finish_reason is None for c in seen if c.choices), "a cut stream looked finished"


def test_metrics_equal_reported_usage(gateway: GatewayProcess, gemini: openai.OpenAI) -> None:
    model = "gemini-metrics-model"
    totals = {"input": 0, "output": 0}
    for i in range(2):
        r = gemini.chat.completions.create(model=model, messages=[{"role": "user", "content": "a b " * (i + 1)}])
        assert r.usage is not None
        totals["input"] += r.usage.prompt_tokens
        totals["output"] += r.usage.completion_tokens
    [last] = [
        c.usage
        for c in gemini.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "streamed words"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        if c.usage
    ]
    totals["input"] += last.prompt_tokens
    totals["output"] += last.completion_tokens

    def sums() -> dict[str, float]:
        out = {}
        for line in gateway.metrics().splitlines():
            if line.startswith("llmgw_gen_ai_client_token_usage_sum{") and f'gen_ai_request_model="{model}"' in line:
                assert 'gen_ai_provider_name="gemini"' in line
                out[line.split('gen_ai_token_type="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return out

    got = wait_until(lambda: sums() if sums().get("input") == totals["input"] else None, what="metrics")
    assert got["output"] == totals["output"]
    assert GEMINI_KEY not in gateway.metrics() and GEMINI_KEY not in gateway.log()


# --- Vertex AI -------------------------------------------------------------------------


def _assert_vertex_headers(headers: dict[str, str], oauth: FakeTokenServer) -> None:
    assert headers["authorization"].removeprefix("Bearer ") in oauth.issued
    assert "x-goog-api-key" not in headers and CLIENT_KEY not in json.dumps(headers)


def test_vertex_chat_with_service_account(
    vertex: openai.OpenAI, provider: FakeProviderThread, oauth: FakeTokenServer, gateway: GatewayProcess
) -> None:
    resp = vertex.chat.completions.create(
        model="gemini-2.5-pro", messages=[{"role": "user", "content": "hello vertex"}], n=2
    )
    assert [c.message.content for c in resp.choices] == ["Hello from fake: hello vertex"] * 2
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    [rec] = provider.requests
    assert rec.path == f"{VERTEX}/gemini-2.5-pro:generateContent"
    _assert_vertex_headers(rec.headers, oauth)
    assert rec.json == {
        "contents": [{"role": "user", "parts": [{"text": "hello vertex"}]}],
        "generationConfig": {"candidateCount": 2},
    }
    assert oauth.grants and all(g.signature_ok and g.claims["iss"] == CLIENT_EMAIL for g in oauth.grants)
    pem = oauth.service_account()["private_key"]
    assert pem[100:140] not in gateway.log() and pem[100:140] not in gateway.config_dump()


def test_vertex_stream_and_embeddings(
    vertex: openai.OpenAI, provider: FakeProviderThread, oauth: FakeTokenServer
) -> None:
    chunks = list(
        vertex.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "vertex stream"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from fake: vertex stream"
    emb = vertex.embeddings.create(model="text-embedding-005", input=["one two", "three"], dimensions=4)
    assert emb.usage.prompt_tokens == 3
    assert emb.data[1].embedding == pytest.approx(wire.embedding_vector("three", 4))
    stream_rec, emb_rec = provider.requests
    assert stream_rec.path == f"{VERTEX}/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert emb_rec.path == f"{VERTEX}/text-embedding-005:predict"
    assert emb_rec.json == {
        "instances": [{"content": "one two"}, {"content": "three"}],
        "parameters": {"outputDimensionality": 4},
    }
    for rec in (stream_rec, emb_rec):
        _assert_vertex_headers(rec.headers, oauth)
