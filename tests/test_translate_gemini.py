"""OpenAI client -> Gemini (AI Studio and Vertex AI): golden files, units, the provider modules, the fake dialect.

Golden cases live in ``tests/golden_translate/openai_gemini/``:

- ``request_<case>.in.json`` (provider, op, model, OpenAI body) -> ``.out.json`` (upstream path and
  Gemini body);
- ``response_<case>.in.json`` (Gemini JSON) -> ``.out.json`` (OpenAI body, usage, response model);
- ``error_<case>.in.json`` (Google error) -> ``.out.json`` (OpenAI error, same status);
- ``stream_<case>.in.sse`` (Gemini ``alt=sse`` events, ``\\r\\n\\r\\n`` separated as Google sends them,
  with ``.in.json`` for op/model/include_usage) -> ``.out.sse`` (OpenAI chunks) byte for byte, and
  ``.out.json`` (usage, response model). Every stream is also re-fed split at every byte position
  and one byte at a time: the output must not change.

Ids and ``created`` are pinned (``stamps.new_id`` counts, ``stamps.now`` is fixed) so outputs are exact.
Regenerate after an intended change, then review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_translate_gemini.py

Translated bodies and streams are also read with the official openai SDK's types and stream
accumulator, so a shape the SDK cannot read (or tool-call arguments it cannot reassemble) fails here.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from extproc.contract import ProviderConfig
from extproc.operations import OPERATIONS_BY_NAME
from extproc.providers import gemini as gemini_provider
from extproc.providers import module_for
from extproc.providers import vertexai as vertex_provider
from extproc.sse import SSEDecoder
from extproc.translate import gemini_schema, openai_gemini_response, select, stamps
from extproc.translate.base import RequestContext
from extproc.translate.openai_gemini import PAIR
from fakeprovider import FakeProviderThread
from tests import golden_files

GOLDEN = Path(__file__).resolve().parent / "golden_translate" / "openai_gemini"
NOW = 1_750_000_000


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count(1)
    monkeypatch.setattr(stamps, "now", lambda: NOW)
    monkeypatch.setattr(stamps, "new_id", lambda prefix: f"{prefix}{next(counter):04d}")


def _provider(kind: str = "gemini", settings: dict[str, str] | None = None, model: str | None = None) -> ProviderConfig:
    return ProviderConfig(
        id="default/g/p", backend="default/g", kind=kind, host="127.0.0.1", model=model, settings=settings or {}
    )


def _cases(prefix: str, suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in GOLDEN.glob(f"{prefix}_*{suffix}"))


def _check_json(name: str, got: Any) -> None:
    golden_files.check(GOLDEN / f"{name}.out.json", golden_files.json_text(got))


def _usage(tr: Any) -> dict[str, int | None] | None:
    u = tr.usage
    return None if u is None else {"input": u.input, "output": u.output, "cache_read": u.cache_read}


def _response_ctx(meta: dict[str, Any], *, stream: bool) -> RequestContext:
    provider = _provider(meta.get("provider", "gemini"))
    ctx = RequestContext(provider=provider, op=meta["op"], model=meta["model"], stream=stream)
    if "encoding_format" in meta:
        object.__setattr__(ctx, "encoding_format", meta["encoding_format"])
    return ctx


def _feed(meta: dict[str, Any], pieces: list[bytes]) -> tuple[Any, bytes]:
    ctx = _response_ctx(meta, stream=True)
    tr = PAIR.response(ctx, client_wants_usage=meta["client_wants_usage"])
    tr.on_headers(200, {"content-type": "text/event-stream"})
    assert tr.streaming
    out = b""
    for n, piece in enumerate(pieces):
        got = tr.on_body(piece, n == len(pieces) - 1)
        out += piece if got is None else got
    return tr, out


# --- the table -------------------------------------------------------------------------


def test_pair_and_providers_are_in_the_tables() -> None:
    assert select("openai", "gemini") is PAIR
    assert module_for("gemini") is gemini_provider
    assert module_for("vertexai") is vertex_provider
    assert gemini_provider.input_includes_cached and vertex_provider.input_includes_cached


# --- golden: requests ------------------------------------------------------------------


@pytest.mark.parametrize("name", _cases("request", ".in.json"))
def test_request_golden(name: str) -> None:
    case = json.loads((GOLDEN / f"{name}.in.json").read_text())
    provider = _provider(case["provider"], case.get("settings"), case.get("provider_model"))
    body = case["body"]
    before = copy.deepcopy(body)
    ctx = RequestContext(provider=provider, op=case["op"], model=case["model"], stream=case["stream"])
    up = PAIR.request(body, ctx)
    assert body == before, "the client's body was modified (a retry would translate something else)"
    assert up.body is not None and up.path is None
    assert PAIR.request(body, ctx).body == up.body, "translation is not idempotent"
    op = OPERATIONS_BY_NAME[case["op"]]
    module = module_for(provider.kind)
    assert module is not None and module.api(provider, op, case["model"]) == "gemini"
    path = module.path(provider, op, case["model"], case["stream"])
    _check_json(name, {"path": path, "headers": up.headers, "body": orjson.loads(up.body)})


# --- golden: JSON responses and errors -------------------------------------------------


@pytest.mark.parametrize("name", _cases("response", ".in.json"))
def test_response_golden(name: str) -> None:
    case = json.loads((GOLDEN / f"{name}.in.json").read_text())
    ctx = _response_ctx(case, stream=False)
    tr = PAIR.response(ctx, client_wants_usage=False)
    changes = tr.on_headers(200, {"content-type": "application/json", "content-length": "10"})
    assert not tr.streaming
    assert changes.set == {"content-type": "application/json"} and changes.remove == ["content-length"]
    raw = orjson.dumps(case["body"])
    out = tr.on_body(raw, True)
    assert out is not None
    doc = orjson.loads(out)
    if case["op"] == "chat_completions":
        ChatCompletion.model_validate(doc)
    elif case["op"] == "completions":
        Completion.model_validate(doc)
    elif case.get("encoding_format") != "base64":  # the SDK decodes base64 before validating
        CreateEmbeddingResponse.model_validate(doc)
    _check_json(name, {"body": doc, "usage": _usage(tr), "response_model": tr.response_model})


@pytest.mark.parametrize("name", _cases("error", ".in.json"))
def test_error_golden(name: str) -> None:
    case = json.loads((GOLDEN / f"{name}.in.json").read_text())
    for stream in (False, True):  # an error answers a streamed request with JSON too
        ctx = RequestContext(provider=_provider(), op="chat_completions", model="gemini-2.5-flash", stream=stream)
        tr = PAIR.response(ctx, client_wants_usage=False)
        changes = tr.on_headers(case["status"], {"content-type": "application/json", "retry-after": "7"})
        assert not tr.streaming and "retry-after" not in changes.remove
        raw = case["raw"].encode() if "raw" in case else orjson.dumps(case["body"])
        out = tr.on_body(raw, True)
        assert out is not None and tr.usage is None
        doc = orjson.loads(out)
        assert set(doc["error"]) == {"message", "type", "code", "param"}
    _check_json(name, {"status": case["status"], "body": doc})


# --- golden: streams -------------------------------------------------------------------


def _check_stream(name: str, out: bytes, tr: Any) -> None:
    golden_files.check(GOLDEN / f"{name}.out.sse", out)
    _check_json(name, {"usage": _usage(tr), "response_model": tr.response_model})


@pytest.mark.parametrize("name", _cases("stream", ".in.sse"))
def test_stream_golden(name: str) -> None:
    meta = json.loads((GOLDEN / f"{name}.in.json").read_text())
    raw = (GOLDEN / f"{name}.in.sse").read_bytes()
    tr, out = _feed(meta, [raw])
    _check_stream(name, out, tr)
    decoder = SSEDecoder()
    events = [ev.data for ev in decoder.feed(out)]
    assert decoder.flush() == b"", "the translated stream ends mid-event"
    errored = any(b'"error"' in data and data.startswith(b'{"error"') for data in events)
    assert (events[-1] == b"[DONE]") != errored, "a stream ends with [DONE] or with an error event, never both"
    if meta["op"] == "chat_completions" and not errored:
        state = ChatCompletionStreamState()
        for data in events[:-1]:
            state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(data)))
        snapshot = state.current_completion_snapshot
        assert all(choice.finish_reason for choice in snapshot.choices)


@pytest.mark.parametrize("name", _cases("stream", ".in.sse"))
def test_stream_survives_every_split(name: str) -> None:
    meta = json.loads((GOLDEN / f"{name}.in.json").read_text())
    raw = (GOLDEN / f"{name}.in.sse").read_bytes()
    expected = (GOLDEN / f"{name}.out.sse").read_bytes()
    # ids restart for each run: the pinned counter is per test, so re-pin for each feed
    for cut in range(len(raw) + 1):
        stamps.new_id = _counter_ids()  # type: ignore[assignment]
        _, out = _feed(meta, [raw[:cut], raw[cut:]])
        assert out == expected, f"split at byte {cut} changed the output"
    stamps.new_id = _counter_ids()  # type: ignore[assignment]
    _, out = _feed(meta, [raw[i : i + 1] for i in range(len(raw))] or [b""])
    assert out == expected, "feeding one byte at a time changed the output"


def _counter_ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}{next(counter):04d}"


def test_streamed_tool_call_arguments_reassemble() -> None:
    meta = json.loads((GOLDEN / "stream_tool_calls.in.json").read_text())
    _, out = _feed(meta, [(GOLDEN / "stream_tool_calls.in.sse").read_bytes()])
    state = ChatCompletionStreamState()
    for ev in SSEDecoder().feed(out)[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(ev.data)))
    message = state.get_final_completion().choices[0].message
    assert message.content == "Checking both."
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    assert calls == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {"city": "Rome", "when": {"tz": "CET", "list": [1, 2]}}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({c.id for c in message.tool_calls or []}) == 3
    assert state.get_final_completion().choices[0].finish_reason == "tool_calls"


def test_tool_round_trip_returns_thought_signature_and_names() -> None:
    """What a response hands out (ids, thought signature) comes back as Gemini parts on the next turn."""
    doc = json.loads((GOLDEN / "response_tool_calls.in.json").read_text())["body"]
    ctx = RequestContext(provider=_provider(), op="chat_completions", model="gemini-3-pro-preview", stream=False)
    tr = PAIR.response(ctx, client_wants_usage=False)
    tr.on_headers(200, {})
    message = orjson.loads(tr.on_body(orjson.dumps(doc), True) or b"")["choices"][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": f"result {i}"} for i, c in enumerate(message["tool_calls"])
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": "go"}, message, *results]}
    sent = orjson.loads(PAIR.request(body, ctx).body or b"")
    model_turn, user_turn = sent["contents"][1], sent["contents"][2]
    assert model_turn["parts"][1] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
        "thoughtSignature": "c2lnLTE=",
    }
    names = [p["functionResponse"]["name"] for p in user_turn["parts"]]
    assert names == ["get_weather", "get_time", "ping"]
    assert user_turn["parts"][0]["functionResponse"]["response"] == {"output": "result 0"}


def test_usage_is_none_when_not_reported_and_merged_counts_otherwise() -> None:
    ctx = RequestContext(provider=_provider(), op="chat_completions", model="m", stream=False)
    tr = PAIR.response(ctx, client_wants_usage=False)
    tr.on_headers(200, {})
    tr.on_body(b'{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}', True)
    assert tr.usage is None
    assert openai_gemini_response.usage_of({"promptTokenCount": 10, "toolUsePromptTokenCount": 5}).input == 15


def test_embeddings_base64_is_little_endian_float32() -> None:
    ctx = RequestContext(provider=_provider(), op="embeddings", model="e", stream=False)
    object.__setattr__(ctx, "encoding_format", "base64")
    tr = PAIR.response(ctx, client_wants_usage=False)
    tr.on_headers(200, {})
    doc = orjson.loads(tr.on_body(b'{"embeddings":[{"values":[0.5,-2.0]}]}', True) or b"")
    assert struct.unpack("<2f", base64.b64decode(doc["data"][0]["embedding"])) == (0.5, -2.0)


def test_non_json_success_body_passes_unchanged() -> None:
    ctx = RequestContext(provider=_provider(), op="chat_completions", model="m", stream=False)
    tr = PAIR.response(ctx, client_wants_usage=False)
    tr.on_headers(200, {})
    assert tr.on_body(b"not json", True) == b"not json"
    tr = PAIR.response(ctx, client_wants_usage=False)
    assert tr.on_headers(304, {}).set == {} and tr.on_body(b"", True) is None


# --- provider modules ------------------------------------------------------------------


def test_gemini_paths() -> None:
    p = _provider()
    chat, emb = OPERATIONS_BY_NAME["chat_completions"], OPERATIONS_BY_NAME["embeddings"]
    assert gemini_provider.path(p, chat, "gemini-2.5-flash", False) == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert (
        gemini_provider.path(p, chat, "models/gemini-2.5-flash", True)
        == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert (
        gemini_provider.path(p, emb, "text-embedding-004", False)
        == "/v1beta/models/text-embedding-004:batchEmbedContents"
    )
    assert gemini_provider.path(p, chat, "a/../b?x", False) == "/v1beta/models/a%2F..%2Fb%3Fx:generateContent"
    fixed = ProviderConfig(id="i", backend="b", kind="gemini", host="h", path="/proxy/generate")
    assert gemini_provider.path(fixed, chat, "m", True) == "/proxy/generate"


def test_vertex_paths_and_apis() -> None:
    chat, emb = OPERATIONS_BY_NAME["chat_completions"], OPERATIONS_BY_NAME["embeddings"]
    p = _provider("vertexai", {"projectId": "proj-1", "region": "us-east5"})
    base = "/v1/projects/proj-1/locations/us-east5/publishers"
    assert vertex_provider.api(p, chat, "gemini-2.5-pro") == "gemini"
    assert (
        vertex_provider.path(p, chat, "gemini-2.5-pro", False) == f"{base}/google/models/gemini-2.5-pro:generateContent"
    )
    assert (
        vertex_provider.path(p, chat, "gemini-2.5-pro", True)
        == f"{base}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert (
        vertex_provider.path(p, emb, "text-embedding-005", False) == f"{base}/google/models/text-embedding-005:predict"
    )
    assert vertex_provider.api(p, chat, "claude-sonnet-4@20250514") == "vertex_anthropic"
    assert (
        vertex_provider.path(p, chat, "claude-sonnet-4@20250514", False)
        == f"{base}/anthropic/models/claude-sonnet-4@20250514:rawPredict"
    )
    assert (
        vertex_provider.path(p, OPERATIONS_BY_NAME["messages"], "claude-sonnet-4@20250514", True)
        == f"{base}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
    )
    default_region = _provider("vertexai", {"projectId": "proj-1"})
    assert vertex_provider.path(default_region, chat, "gemini-2.5-pro", False).startswith(
        "/v1/projects/proj-1/locations/global/publishers/google/"
    )


# --- JSON schema cleanup ---------------------------------------------------------------


def test_schema_cleanup() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "properties": {
            "node": {"$ref": "#/$defs/Node"},
            "maybe": {"type": ["integer", "null"]},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "flag": {"const": True},
            "when": {"type": "string", "format": "date-time"},
            "uri": {"type": "string", "format": "uri"},
        },
    }
    before = copy.deepcopy(schema)
    out = gemini_schema.to_gemini(schema)
    assert schema == before
    props = out["properties"]
    assert "additionalProperties" not in out and "$defs" not in out
    assert props["node"] == {"type": "object", "properties": {"child": {"type": "object"}}}
    assert props["maybe"] == {"type": "integer", "nullable": True}
    assert props["either"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert props["flag"] == {"type": "boolean"}
    assert props["when"]["format"] == "date-time" and "format" not in props["uri"]


# --- the fake dialect ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Any:
    fp = FakeProviderThread(name="gem").start()
    yield fp
    fp.stop()


def _post(fake: FakeProviderThread, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    hdrs = {"x-goog-api-key": "k", **(headers or {})}
    return httpx.post(fake.url + path, json=body, headers=hdrs, timeout=10)


def test_fake_generate_and_auth(fake: FakeProviderThread) -> None:
    fake.reset_behaviour()
    body = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}
    r = _post(fake, "/v1beta/models/gemini-2.5-flash:generateContent", body)
    assert r.status_code == 200
    doc = r.json()
    assert doc["candidates"][0]["content"]["parts"] == [{"text": "Hello from gem: hi there"}]
    assert doc["usageMetadata"]["promptTokenCount"] == 2 and doc["modelVersion"] == "gemini-2.5-flash"
    r = httpx.post(fake.url + "/v1beta/models/m:generateContent", json=body, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = _post(fake, "/v1beta/models/m:generateContent", {"contents": [], "temperature": 1})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_fake_stream_errors_and_cut(fake: FakeProviderThread) -> None:
    fake.reset_behaviour()
    body = {"contents": [{"role": "user", "parts": [{"text": "a b c"}]}]}
    vertex = "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-pro"
    r = _post(fake, vertex + ":streamGenerateContent?alt=sse", body, {"authorization": "Bearer t"})
    events = [e for e in r.content.split(b"\r\n\r\n") if e]
    assert len(events) == 5 and b"[DONE]" not in r.content
    assert json.loads(events[-1][6:])["candidates"][0]["finishReason"] == "STOP"
    assert _post(fake, vertex + ":streamGenerateContent", body).status_code == 400
    fake.set_behaviour(error_status=429, retry_after=3, error_count=1)
    r = _post(fake, "/v1beta/models/m:generateContent", body)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"] == {"code": 429, "message": r.json()["error"]["message"], "status": "RESOURCE_EXHAUSTED"}
    fake.reset_behaviour()
    fake.set_behaviour(cut_stream_after_chunks=2, error_count=1)
    with pytest.raises(httpx.HTTPError):
        _post(fake, "/v1beta/models/m:streamGenerateContent?alt=sse", body)
    fake.reset_behaviour()


def test_fake_embeddings(fake: FakeProviderThread) -> None:
    fake.reset_behaviour()
    req = {"requests": [{"model": "models/e1", "content": {"parts": [{"text": "x"}]}}]}
    r = _post(fake, "/v1beta/models/e1:batchEmbedContents", req)
    assert r.status_code == 200 and len(r.json()["embeddings"][0]["values"]) == 8
    assert _post(fake, "/v1beta/models/other:batchEmbedContents", req).status_code == 400
    vertex = "/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    r = _post(fake, vertex, {"instances": [{"content": "one two"}], "parameters": {"outputDimensionality": 4}})
    prediction = r.json()["predictions"][0]["embeddings"]
    assert prediction["statistics"]["token_count"] == 2 and len(prediction["values"]) == 4
