"""The openai SDK through the real gateway to the fake OpenAI-compatible provider.

Asserts both sides: what the provider received (path, injected key, no client
key, rewritten model, include_usage) and what the client got (content, usage,
no extra usage chunk), plus the metrics and the access log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration
CLIENT_KEY = "sk-client-own-key-must-not-leak"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=provider.port, key="sk-provider-secret"))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def client(gateway: GatewayProcess, provider: FakeProviderThread) -> openai.OpenAI:
    provider.clear()
    provider.reset_behaviour()
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def test_chat_completion_reaches_provider_with_gateway_key(client: openai.OpenAI, provider: FakeProviderThread) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello gateway world"}]
    )
    assert resp.choices[0].message.content == "Hello from fake: hello gateway world"
    assert resp.usage is not None and resp.usage.prompt_tokens == 3
    [rec] = provider.requests
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer sk-provider-secret"
    assert CLIENT_KEY not in json.dumps(rec.headers)
    assert rec.json["model"] == "gpt-4o-mini"
    assert "stream_options" not in rec.json


def test_stream_injects_include_usage_and_hides_usage_chunk(
    client: openai.OpenAI, provider: FakeProviderThread
) -> None:
    provider.set_behaviour(chunks=6)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake: stream please"
    assert all(c.choices for c in chunks), "the usage-only chunk the gateway asked for reached the client"
    assert all(c.usage is None for c in chunks)
    [rec] = provider.requests
    assert rec.json["stream_options"] == {"include_usage": True}


def test_stream_keeps_usage_chunk_when_client_asked(client: openai.OpenAI, provider: FakeProviderThread) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "count me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens == 2 and usage[0].completion_tokens == 5
    assert chunks[-1].choices == []


def test_async_client_and_embeddings(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    async def main() -> tuple[list[str], list[float]]:
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
            replies = await asyncio.gather(
                *(
                    c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"n{i}"}])
                    for i in range(20)
                )
            )
            emb = await c.embeddings.create(model="text-embedding-3-small", input="embed me")
            return [r.choices[0].message.content or "" for r in replies], emb.data[0].embedding

    provider.clear()
    texts, vector = asyncio.run(main())
    assert sorted(texts) == sorted(f"Hello from fake: n{i}" for i in range(20))
    assert len(vector) == 8
    emb_req = [r for r in provider.requests if r.path.endswith("/embeddings")]
    assert emb_req and emb_req[0].path == "/v1/embeddings"


def test_legacy_completions(client: openai.OpenAI, provider: FakeProviderThread) -> None:
    resp = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert resp.choices[0].text == "Hello from fake: say this"
    assert provider.requests[-1].path == "/v1/completions"


def test_prefix_route_rewrites_path(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    provider.clear()
    c = openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    resp = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "via prefix"}])
    assert resp.choices[0].message.content == "Hello from fake: via prefix"
    assert provider.requests[-1].path == "/v1/chat/completions"


def test_unknown_fields_pass_through_untouched(client: openai.OpenAI, provider: FakeProviderThread) -> None:
    client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], extra_body={"vendor_knob": {"a": [1, 2]}}
    )
    assert provider.requests[-1].json["vendor_knob"] == {"a": [1, 2]}


def test_models_answered_by_gateway(client: openai.OpenAI, provider: FakeProviderThread) -> None:
    client.models.list()
    assert provider.requests == []


def test_metrics_equal_reported_usage(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    model = "metrics-model"
    totals = {"input": 0, "output": 0}
    for i in range(3):
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "one two " * (i + 1)}])
        assert r.usage is not None
        totals["input"] += r.usage.prompt_tokens
        totals["output"] += r.usage.completion_tokens
    stream = c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "streamed words here"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    [u] = [ch.usage for ch in stream if ch.usage]
    totals["input"] += u.prompt_tokens
    totals["output"] += u.completion_tokens

    def sums() -> dict[str, float]:
        out = {}
        for line in gateway.metrics().splitlines():
            if line.startswith("llmgw_gen_ai_client_token_usage_sum{") and f'gen_ai_request_model="{model}"' in line:
                ttype = line.split('gen_ai_token_type="')[1].split('"')[0]
                out[ttype] = float(line.rsplit(" ", 1)[1])
        return out

    got = wait_until(lambda: sums() if sums().get("input") == totals["input"] else None, what="metrics")
    assert got["output"] == totals["output"]
    text = gateway.metrics()
    assert 'route="default/openai"' in text and 'backend="default/fake"' in text and 'gateway="default/gw"' in text
    assert "llmgw_gen_ai_server_time_to_first_token_bucket" in text
    assert "sk-provider-secret" not in text


def test_access_log_has_tokens_and_no_keys(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="log-model", messages=[{"role": "user", "content": "a b c d"}])

    def entry() -> dict[str, object] | None:
        for line in gateway.log().splitlines():
            if line.startswith("{") and '"log-model"' in line:
                return json.loads(line)
        return None

    rec = wait_until(entry, what="access log line")
    assert rec["gen_ai.request.model"] == "log-model"
    assert rec["gen_ai.usage.input_tokens"] == 4
    assert rec["gen_ai.usage.output_tokens"] == 7
    assert rec["gen_ai.provider.name"] == "openai"
    assert rec["status"] == 200 and rec["gateway"] == "default/gw"
    # a single-provider route without model matches is direct: no attempt-stage stream
    assert rec["route"] == "httproute/default/openai/rule/0/match/0/direct"
    assert "sk-provider-secret" not in gateway.log() and CLIENT_KEY not in gateway.log()


def test_config_dump_has_no_secret(gateway: GatewayProcess) -> None:
    dump = gateway.config_dump()
    assert "aibackend/default/fake" in dump
    assert "sk-provider-secret" not in dump


def test_readiness(gateway: GatewayProcess) -> None:
    assert httpx.get(f"http://127.0.0.1:{gateway.ready_port}/healthz/ready").status_code == 200
