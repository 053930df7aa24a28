"""The fake OpenAI provider speaks the real wire format and injects faults on demand.

The gateway's integration tests trust this fake, so it is checked here against
the official `openai` SDK and against the exact shapes OpenAI sends.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from fakeprovider import Behaviour, BehaviourError, FakeProviderThread, respond, start_fake_provider
from fakeprovider.openai_wire import split_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderThread]:
    with FakeProviderThread(name="alpha") as fp:
        yield fp


@pytest.fixture
def fp(server: FakeProviderThread) -> Iterator[FakeProviderThread]:
    server.reset_behaviour()
    server.clear()
    yield server
    server.reset_behaviour()


@pytest.fixture
def http(fp: FakeProviderThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fp.url, timeout=5) as client:
        yield client


def chat_body(text: str = "hi there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        **extra,
    }


def sse_events(text: str) -> list[Any]:
    """Parse an SSE body into JSON payloads, keeping the literal `[DONE]`."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


def test_chat_completion_json(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body("hi there"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert body["system_fingerprint"] == "fp_fake"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from alpha: hi there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # prompt: "be brief" + "hi there" = 4 words; completion: 5 words
    assert body["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 5,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_content_parts_truncation_and_response_model(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(response_model="gpt-reported")
    long = "x" * 300
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}]
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": parts}, {"role": "user", "content": long}],
    }
    r = http.post("/custom/prefix/chat/completions", json=body).json()
    assert r["model"] == "gpt-reported"
    assert r["choices"][0]["message"]["content"] == "Hello from alpha: " + "x" * 200


@pytest.mark.parametrize("path", ["/v1/models", "/openai/v1/models", "/models"])
def test_models_any_prefix(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.json() == {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
    }


def test_unknown_path_and_bad_bodies(http: httpx.Client) -> None:
    r = http.post("/v1/nothing-here?x=1")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "not_found"
    assert r.json()["error"]["param"] is None
    assert http.get("/v1/chat/completions").status_code == 404

    r = http.post("/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "model"


def test_azure_deployment_path_supplies_model(http: httpx.Client) -> None:
    r = http.post(
        "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
        json={"messages": [{"role": "user", "content": "yo"}]},
    )
    assert r.status_code == 200
    assert r.json()["model"] == "my-gpt"


def test_stream_without_usage(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(chunks=3)
    r = http.post("/v1/chat/completions", json=chat_body("one two three four", stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) == 3
    assert "".join(pieces) == "Hello from alpha: one two three four"
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_stream_with_include_usage(http: httpx.Client) -> None:
    body = chat_body("a b", stream=True, stream_options={"include_usage": True})
    events = sse_events(http.post("/v1/chat/completions", json=body).text)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 4
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in events[:-2])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events[:-2])
    assert text == "Hello from alpha: a b"


def test_openai_sdk_chat_and_stream(fp: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=fp.url + "/v1", api_key="x", max_retries=0)
    done = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "ping"}])
    assert done.choices[0].message.content == "Hello from alpha: ping"
    assert done.usage is not None and done.usage.total_tokens == 1 + 4
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "ping"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from alpha: ping"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_legacy_completions(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": "inst", "prompt": "say this"}).json()
    assert r["object"] == "text_completion"
    assert r["id"].startswith("cmpl-")
    assert r["choices"] == [
        {"text": "Hello from alpha: say this", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert r["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    body = {"model": "inst", "prompt": ["x", "y z"], "stream": True}
    events = sse_events(http.post("/v1/completions", json={**body}).text)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "Hello from alpha: y z"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    body["stream_options"] = {"include_usage": True}
    events = sse_events(http.post("/v1/completions", json=body).text)
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["prompt_tokens"] == 3


def test_embeddings_sdk_base64_matches_float(fp: FakeProviderThread, http: httpx.Client) -> None:
    client = openai.OpenAI(base_url=fp.url + "/v1", api_key="x", max_retries=0)
    result = client.embeddings.create(model="emb", input=["hello world", "bye"])
    assert fp.requests[-1].json["encoding_format"] == "base64"  # the SDK's default
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens == 3
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 8 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-5

    plain = http.post("/v1/embeddings", json={"model": "emb", "input": ["hello world", "bye"]})
    assert [d["embedding"] for d in plain.json()["data"]] == vectors

    raw = http.post(
        "/v1/embeddings",
        json={"model": "emb", "input": "hello world", "encoding_format": "base64"},
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == vectors[0]

    sized = client.embeddings.create(model="emb", input=[[1, 2, 3]], dimensions=16)
    assert len(sized.data[0].embedding) == 16
    assert sized.usage.prompt_tokens == 3
    tokens = http.post("/v1/embeddings", json={"model": "emb", "input": [5, 6]}).json()
    assert len(tokens["data"]) == 1
    assert http.post("/v1/embeddings", json={"model": "emb", "input": 3}).status_code == 400


def test_error_injection_with_count_and_retry_after(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(error_status=429, error_count=2, retry_after=3)
    for _ in range(2):
        r = http.post("/v1/chat/completions", json=chat_body())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3"
        assert r.json()["error"]["type"] == "rate_limit_error"
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert fp.behaviour.error_count == 0

    fp.set_behaviour(error_status=503, error_count=None, retry_after=None)
    for _ in range(3):
        r = http.post("/v1/embeddings", json={"model": "e", "input": "x"})
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "server_error"
        assert "retry-after" not in r.headers


def test_faults_for_one_model_only(fp: FakeProviderThread, http: httpx.Client) -> None:
    """Two providers on one host:port with different models fail independently."""
    fp.set_behaviour(error_status=500, error_count=2, fault_model="gpt-cheap")
    assert http.post("/v1/chat/completions", json=chat_body(model="gpt-pricey")).status_code == 200
    assert http.post("/v1/chat/completions", json=chat_body(model="gpt-cheap")).status_code == 500
    assert http.post("/openai/deployments/gpt-cheap/chat/completions", json={"messages": []}).status_code == 500
    assert fp.behaviour.error_count == 0  # the other model's request did not spend the budget
    assert http.post("/v1/chat/completions", json=chat_body(model="gpt-cheap")).status_code == 200


def test_openai_sdk_sees_injected_errors(fp: FakeProviderThread) -> None:
    fp.set_behaviour(error_status=401)
    client = openai.OpenAI(base_url=fp.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.status_code == 401


def test_request_recording(fp: FakeProviderThread, http: httpx.Client) -> None:
    sent_after = time.time()
    http.post(
        "/v1/chat/completions?api-version=1",
        json=chat_body(),
        headers=[("X-Custom", "a"), ("x-custom", "b"), ("Authorization", "Bearer k")],
    )
    http.get("/_fake/healthz")
    http.get("/_fake/requests")
    assert len(fp.requests) == 1
    rec = fp.requests[0]
    assert rec.method == "POST"
    assert rec.path == "/v1/chat/completions?api-version=1"
    assert rec.headers["x-custom"] == "a, b"
    assert rec.headers["authorization"] == "Bearer k"
    assert rec.json == chat_body()
    assert orjson.loads(rec.body) == chat_body()
    assert rec["path"] == rec.path
    assert sent_after <= rec.time <= time.time()  # the wall-clock time it was received

    listed = http.get("/_fake/requests").json()
    assert listed[0]["path"] == rec.path and listed[0]["json"] == chat_body()
    http.post("/v1/chat/completions", content=b"not json")
    assert fp.requests[-1].json is None and fp.requests[-1].body == "not json"
    assert http.delete("/_fake/requests").status_code == 200
    assert fp.requests == []


def test_admin_behaviour_endpoint(http: httpx.Client) -> None:
    r = http.put("/_fake/behaviour", json={"error_status": 500, "error_count": 1})
    assert r.status_code == 200 and r.json()["error_status"] == 500
    assert http.get("/_fake/behaviour").json()["error_count"] == 1
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 500
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200
    bad = http.put("/_fake/behaviour", json={"nope": 1})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
    assert http.put("/_fake/behaviour", json={"chunks": "many"}).status_code == 400
    assert http.delete("/_fake/behaviour").json()["error_status"] is None


def test_per_request_header_override(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(error_status=500, error_count=1)
    override = {"x-fake-behaviour": '{"error_status": null, "response_model": "m2"}'}
    r = http.post("/v1/chat/completions", json=chat_body(), headers=override)
    assert r.status_code == 200 and r.json()["model"] == "m2"
    assert fp.behaviour.error_count == 1  # the header's request did not spend the budget
    r = http.post(
        "/v1/chat/completions",
        json=chat_body(),
        headers={"x-fake-behaviour": '{"error_status": 403}'},
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 500
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200
    bad = http.post("/v1/chat/completions", json=chat_body(), headers={"x-fake-behaviour": "{"})
    assert bad.status_code == 400


def test_cut_stream(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(cut_stream_after_chunks=2)
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r,
    ):
        assert r.status_code == 200
        for part in r.iter_bytes():
            received += part
    events = sse_events(received.decode())
    assert len(events) == 2 and "[DONE]" not in events
    # non-streaming requests are not affected by a stream cut
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_cut_stream_cleanly(fp: FakeProviderThread, http: httpx.Client) -> None:
    """The response ends properly after two events: no [DONE], but no broken connection either."""
    fp.set_behaviour(cut_stream_after_chunks=2, cut_cleanly=True)
    r = http.post("/v1/chat/completions", json=chat_body(stream=True))
    assert r.status_code == 200
    events = sse_events(r.text)
    assert len(events) == 2 and "[DONE]" not in events
    anthropic_stream = http.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": "claude", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert anthropic_stream.status_code == 200
    assert "message_start" in anthropic_stream.text and "message_stop" not in anthropic_stream.text


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the fake applies (every deliberate one goes through `respond.pause`), recorded, not slept."""
    recorded: list[float] = []

    async def pause(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(respond, "pause", pause)
    return recorded


def test_reset_connection_and_latency(fp: FakeProviderThread, http: httpx.Client, pauses: list[float]) -> None:
    fp.set_behaviour(reset_connection=True, error_count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/chat/completions", json=chat_body())
    assert len(fp.requests) == 1  # recorded even though never answered
    assert pauses == []
    fp.set_behaviour(latency_ms=150)
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert pauses == [0.15]  # once, before the answer


def test_chunk_interval(fp: FakeProviderThread, http: httpx.Client, pauses: list[float]) -> None:
    fp.set_behaviour(chunks=2, chunk_interval_ms=30)
    r = http.post("/v1/chat/completions", json=chat_body(stream=True))
    assert len(sse_events(r.text)) == 5  # role, 2 pieces, finish, [DONE]
    assert pauses == [0.03] * 4  # between each two of them


def test_require_auth(fp: FakeProviderThread, http: httpx.Client) -> None:
    fp.set_behaviour(require_auth="sk-good")
    assert http.get("/v1/models").status_code == 401
    assert http.get("/v1/models", headers={"authorization": "Bearer sk-bad"}).status_code == 401
    assert http.get("/v1/models", headers={"authorization": "Bearer sk-good"}).status_code == 200
    assert http.get("/v1/models", headers={"api-key": "sk-good"}).status_code == 200
    assert http.get("/v1/models", headers={"x-api-key": "sk-good"}).status_code == 200
    r = http.get("/v1/models")
    assert r.json()["error"]["type"] == "authentication_error"


def test_behaviour_validation() -> None:
    assert Behaviour().merged({"latency_ms": 5}).latency_ms == 5.0
    assert Behaviour(chunks=9).merged({"chunks": None}).chunks == 5
    for bad in ({"chunks": 0}, {"error_status": 200}, {"reset_connection": 1}, {"x": 1}):
        with pytest.raises(BehaviourError):
            Behaviour().merged(bad)


@pytest.mark.parametrize("pieces", [1, 2, 3, 5, 8, 40, 1000])
def test_split_text_concatenates_exactly(pieces: int) -> None:
    text = "  Hello from alpha:  a  b\tc  "
    parts = split_text(text, pieces)
    assert "".join(parts) == text
    assert all(parts)
    assert len(parts) == min(pieces, len(text))


def test_async_api() -> None:
    async def scenario() -> None:
        provider = await start_fake_provider(behaviour=Behaviour(response_text="fixed"))
        try:
            async with httpx.AsyncClient(base_url=provider.url) as client:
                r = await client.post("/v1/chat/completions", json=chat_body())
            assert r.json()["choices"][0]["message"]["content"] == "fixed"
            assert provider.requests[0].path == "/v1/chat/completions"
            provider.behaviour.error_status = 502
            async with httpx.AsyncClient(base_url=provider.url) as client:
                assert (await client.get("/v1/models")).status_code == 502
        finally:
            await provider.close()

    asyncio.run(scenario())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeProviderThread(ssl_context=context) as fp:
        assert fp.url.startswith("https://")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=client_ctx) as client:
            assert client.get(fp.url + "/v1/models").status_code == 200


def test_cli_listens_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakeprovider", "--port", "0", "--name", "cli", "--chunks", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake provider cli listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        r = httpx.post(url + "/v1/chat/completions", json=chat_body("q"))
        assert r.json()["choices"][0]["message"]["content"] == "Hello from cli: q"

        port = int(url.rsplit(":", 1)[1])
        clash = subprocess.run(
            [sys.executable, "-m", "fakeprovider", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert clash.returncode == 1
        assert "address already in use" in clash.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_thread_start_on_busy_port_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(OSError):
            FakeProviderThread(port=sock.getsockname()[1]).start()
