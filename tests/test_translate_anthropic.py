"""Anthropic as a provider: OpenAI chat -> Anthropic Messages, Anthropic passthrough, the fake's dialect.

Golden cases live in ``tests/golden_translate/<pair>/`` for the pairs
``openai_anthropic`` and ``anthropic_anthropic``:

- ``request_<case>.in.json`` (client body) -> ``.out.json`` (upstream body, headers);
  provider settings for a case come from ``REQUEST_CTX`` below;
- ``response_<case>.in.json`` (Anthropic message) -> ``.out.json`` (client body, header
  changes, normalized usage, response model);
- ``error_<status>[_variant].in.json|.in.txt`` (provider error) -> ``.out.json``;
- ``stream_<case>.in.sse`` (recorded Anthropic events) -> ``.out.sse`` (client bytes) and
  ``.out.json`` (usage, model); a name containing ``_usage`` means the client asked for
  ``stream_options.include_usage``. Every stream is re-fed split at every byte position
  (and byte by byte) and must give the same bytes and usage.

Regenerate after an intended change, then review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_translate_anthropic.py

Translated bodies and streams are also read by the official openai SDK (types, the
stream accumulator, its error classes), and the translation runs against the fake
provider's Anthropic dialect in-process, so a shape either side cannot read fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from extproc.contract import ProviderConfig
from extproc.operations import OPERATIONS_BY_NAME
from extproc.providers import anthropic as anthropic_provider
from extproc.providers import module_for
from extproc.translate import anthropic_anthropic, openai_anthropic, select
from extproc.translate.anthropic_wire import AnthropicUsage, usage_from_anthropic
from extproc.translate.base import RequestContext
from extproc.usage import Usage
from fakeprovider import FakeProviderThread
from fakeprovider import anthropic_wire as wire
from tests import golden_files

ROOT = Path(__file__).resolve().parent / "golden_translate"
CREATED = 1_750_000_000
MODEL = "claude-sonnet-4-5"


def provider(**kw: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "id": "default/claude/p",
        "backend": "default/claude",
        "kind": "anthropic",
        "host": "h",
        "path_prefix": "",  # what the control plane gives an `anthropic` provider without `pathPrefix`
    }
    return ProviderConfig(**{**fields, **kw})


# case -> (provider, provider API) for request cases that need more than the defaults
REQUEST_CTX: dict[str, tuple[ProviderConfig, str]] = {
    "openai_anthropic/request_anthropic_extras": (
        provider(model="claude-opus-4-1", settings={"apiVersion": "2099-01-01"}),
        "anthropic",
    ),
    "openai_anthropic/request_vertex": (
        provider(kind="vertexai", model="claude-sonnet-4-5@20250929"),
        "vertex_anthropic",
    ),
    "anthropic_anthropic/request_model_override": (
        provider(model="claude-override", settings={"apiVersion": "2023-06-01"}),
        "anthropic",
    ),
}
CLIENT_API = {"openai_anthropic": ("openai", "chat_completions"), "anthropic_anthropic": ("anthropic", "messages")}


def _cases(pair: str, prefix: str, suffix: str) -> list[str]:
    return sorted(f"{pair}/{p.name.removesuffix(suffix)}" for p in (ROOT / pair).glob(f"{prefix}_*{suffix}"))


def _all(prefix: str, suffix: str) -> list[str]:
    return _cases("openai_anthropic", prefix, suffix) + _cases("anthropic_anthropic", prefix, suffix)


def _check_json(case: str, got: Any) -> None:
    golden_files.check(ROOT / f"{case}.out.json", golden_files.json_text(got))


def _pair_and_ctx(case: str, *, stream: bool = False, model: str = MODEL) -> tuple[Any, RequestContext]:
    """`model`: the client's; the attempt stage gives the pair the provider's fixed model instead."""
    pair_name = case.split("/")[0]
    prov, provider_api = REQUEST_CTX.get(case, (provider(), "anthropic"))
    client_api, op = CLIENT_API[pair_name]
    pair = select(client_api, provider_api)
    assert pair is not None
    return pair, RequestContext(provider=prov, op=op, model=prov.model or model, stream=stream)


def _response(case: str, *, stream: bool, wants_usage: bool = False) -> Any:
    pair, ctx = _pair_and_ctx(case, stream=stream)
    tr = pair.response(ctx, client_wants_usage=wants_usage)
    if hasattr(tr, "created"):
        tr.created = CREATED
    return tr


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    return None if usage is None else dataclasses.asdict(usage)


# --- golden: requests ----------------------------------------------------------------------


@pytest.mark.parametrize("case", _all("request", ".in.json"))
def test_request_golden(case: str) -> None:
    body = json.loads((ROOT / f"{case}.in.json").read_text())
    pair, ctx = _pair_and_ctx(case, stream=body.get("stream") is True, model=body.get("model") or MODEL)
    up = pair.request(copy.deepcopy(body), ctx)
    again = pair.request(copy.deepcopy(body), ctx)  # a retried attempt translates the same way
    assert (up.body, up.path, up.headers) == (again.body, again.path, again.headers)
    got = {"body": None if up.body is None else orjson.loads(up.body), "headers": up.headers, "path": up.path}
    _check_json(case, got)


# --- golden: JSON responses and errors --------------------------------------------------------


def _json_case(case: str, status: int, raw: bytes) -> dict[str, Any]:
    tr = _response(case, stream=False)
    changes = tr.on_headers(status, {"content-type": "application/json", "content-length": str(len(raw))})
    assert not tr.streaming
    out = tr.on_body(raw, True)
    return {
        "headers": {"set": changes.set, "remove": changes.remove},
        "body": None if out is None else orjson.loads(out),
        "usage": _usage(tr.usage),
        "response_model": tr.response_model,
    }


@pytest.mark.parametrize("case", _all("response", ".in.json"))
def test_response_golden(case: str) -> None:
    got = _json_case(case, 200, (ROOT / f"{case}.in.json").read_bytes())
    _check_json(case, got)
    if case.startswith("openai_anthropic/"):
        completion = openai.types.chat.ChatCompletion.model_validate(got["body"])
        assert completion.choices[0].finish_reason in ("stop", "length", "tool_calls", "content_filter")


def _error_cases() -> list[str]:
    return _all("error", ".in.json") + _all("error", ".in.txt")


@pytest.mark.parametrize("case", _error_cases())
def test_error_golden(case: str) -> None:
    path = ROOT / f"{case}.in.json"
    raw = path.read_bytes() if path.exists() else (ROOT / f"{case}.in.txt").read_bytes()
    status = int(case.split("/")[1].split("_")[1])
    got = _json_case(case, status, raw)
    _check_json(case, got)
    assert got["usage"] is None
    if case.startswith("openai_anthropic/"):
        assert set(got["body"]["error"]) == {"message", "type", "code", "param"} and got["body"]["error"]["message"]


# --- golden: streams -------------------------------------------------------------------------


def _feed(case: str, chunks: list[bytes]) -> tuple[bytes, Any]:
    tr = _response(case, stream=True, wants_usage="_usage" in case)
    tr.on_headers(200, {"content-type": "text/event-stream; charset=utf-8"})
    assert tr.streaming
    out = b""
    for i, chunk in enumerate(chunks):
        piece = tr.on_body(chunk, i == len(chunks) - 1)
        out += chunk if piece is None else piece
    return out, tr


@pytest.mark.parametrize("case", _all("stream", ".in.sse"))
def test_stream_golden(case: str) -> None:
    raw = (ROOT / f"{case}.in.sse").read_bytes()
    out, tr = _feed(case, [raw])
    changes = _response(case, stream=True).on_headers(200, {"content-type": "text/event-stream"})
    golden_files.check(ROOT / f"{case}.out.sse", out)
    meta = {"headers": {"set": changes.set, "remove": changes.remove}, "usage": _usage(tr.usage)}
    _check_json(case, {**meta, "response_model": tr.response_model})


@pytest.mark.parametrize("case", _all("stream", ".in.sse"))
def test_stream_split_anywhere(case: str) -> None:
    raw = (ROOT / f"{case}.in.sse").read_bytes()
    whole, tr = _feed(case, [raw])
    splits = [[raw[:i], raw[i:]] for i in range(len(raw) + 1)]
    splits.append([raw[i : i + 1] for i in range(len(raw))])  # byte by byte
    splits.append([raw, b""])  # Envoy's empty end-of-stream message
    splits.append([raw[i : i + 7] for i in range(0, len(raw), 7)] + [b""])
    for chunks in splits:
        out, other = _feed(case, chunks)
        assert out == whole, f"{case}: output differs when split as {[len(c) for c in chunks][:4]}..."
        assert other.usage == tr.usage and other.response_model == tr.response_model


# --- the openai SDK reads what the pair produces ------------------------------------------


def _sdk(status: int, body: bytes, content_type: str) -> openai.OpenAI:
    """An openai client whose transport answers `body`; built on the SDK's own HTTP library (httpx or its fork)."""
    http: Any = vars(openai._base_client).get("httpx2") or vars(openai._base_client)["httpx"]

    def handler(request: Any) -> Any:
        return http.Response(status, content=body, headers={"content-type": content_type, "retry-after": "7"})

    client = http.Client(transport=http.MockTransport(handler))
    return openai.OpenAI(base_url="http://test/v1", api_key="k", max_retries=0, http_client=client)


def _stream_out(name: str) -> bytes:
    return (ROOT / "openai_anthropic" / f"{name}.out.sse").read_bytes()


def test_sdk_reassembles_streamed_tool_calls() -> None:
    client = _sdk(200, _stream_out("stream_tool_calls_usage"), "text/event-stream")
    messages: Any = [{"role": "user", "content": "x"}]
    with client.chat.completions.stream(model=MODEL, messages=messages) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking." and final.choices[0].finish_reason == "tool_calls"
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    assert calls == [
        ("toolu_A", "get_weather", {"city": "Paris"}),
        ("toolu_B", "get_weather", {"city": "Zürich", "unit": "c"}),
    ]
    assert final.usage is not None and final.usage.prompt_tokens == 400 and final.usage.completion_tokens == 60


def test_sdk_reads_json_tool_as_content_and_hides_usage_chunk() -> None:
    client = _sdk(200, _stream_out("stream_json_tool"), "text/event-stream")
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"city": "Lyon"}
    assert all(c.choices and not c.choices[0].delta.tool_calls for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("name", ["stream_cut", "stream_cut_mid_event", "stream_error_event"])
def test_sdk_raises_on_cut_or_error_stream(name: str) -> None:
    client = _sdk(200, _stream_out(name), "text/event-stream")
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            seen.append(chunk.choices[0].delta.content or "")
            assert chunk.choices[0].finish_reason is None
    assert "".join(seen).startswith("Partial")
    assert "Overloaded" in str(info.value) or "ended before" in str(info.value)


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (529, openai.InternalServerError),
    ],
)
def test_sdk_raises_matching_error_class(status: int, exc: type[openai.APIStatusError]) -> None:
    raw = (ROOT / "openai_anthropic" / f"error_{status}.in.json").read_bytes()
    body = json.dumps(json.loads((ROOT / "openai_anthropic" / f"error_{status}.out.json").read_text())["body"])
    with pytest.raises(exc) as info:
        _sdk(status, body.encode(), "application/json").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == status
    assert json.loads(raw)["error"]["message"] in info.value.message


# --- units ---------------------------------------------------------------------------------


def test_tables_select_the_anthropic_pairs_and_provider() -> None:
    assert select("openai", "anthropic") is openai_anthropic.PAIR
    assert select("openai", "vertex_anthropic") is openai_anthropic.VERTEX_PAIR
    assert select("anthropic", "anthropic") is anthropic_anthropic.PAIR
    assert module_for("anthropic") is anthropic_provider
    assert anthropic_provider.input_includes_cached is False


@pytest.mark.parametrize("op", ["chat_completions", "messages"])
def test_provider_path(op: str) -> None:
    operation = OPERATIONS_BY_NAME[op]
    assert anthropic_provider.api(provider(), operation, MODEL) == "anthropic"
    assert anthropic_provider.path(provider(), operation, MODEL, False) == "/v1/messages"
    assert anthropic_provider.path(provider(path_prefix="/anthropic/"), operation, MODEL, True) == (
        "/anthropic/v1/messages"
    )
    assert anthropic_provider.path(provider(path="/custom?x=1"), operation, MODEL, True) == "/custom?x=1"


def test_usage_normalization_adds_cache_back_once() -> None:
    assert usage_from_anthropic(None) is None and usage_from_anthropic({}) is None
    raw = {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 3}
    assert usage_from_anthropic(raw) == Usage(input=115, output=3, cache_read=100, cache_write=5)
    acc = AnthropicUsage()
    acc.update({"input_tokens": 10, "output_tokens": 1})
    acc.update({"output_tokens": 42})  # a message_delta without input: the input report stays
    acc.update({"output_tokens": None, "input_tokens": True})  # junk never erases
    assert acc.normalized() == Usage(input=10, output=42, cache_read=None, cache_write=None)


def test_request_does_not_mutate_the_client_body() -> None:
    body = json.loads((ROOT / "openai_anthropic" / "request_multiturn_tools.in.json").read_text())
    before = copy.deepcopy(body)
    openai_anthropic.PAIR.request(
        body, RequestContext(provider=provider(), op="chat_completions", model=MODEL, stream=False)
    )
    assert body == before


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m"},
        {"model": "m", "messages": "nope", "tools": "x", "tool_choice": 3, "stop": 5, "max_tokens": "10"},
        {"model": "m", "messages": [None, 1, {"role": "assistant", "tool_calls": [{"function": {"arguments": "{"}}]}]},
        {"model": "m", "messages": [{"role": "tool", "content": None}], "response_format": {"type": "json_schema"}},
        {"model": "m", "messages": [], "reasoning_effort": ["high"], "thinking": None, "user": 7},
    ],
)
def test_request_never_raises_on_odd_input(body: dict[str, Any]) -> None:
    """Odd input is Anthropic's to reject with a 400 the client sees, never a gateway crash."""
    ctx = RequestContext(provider=provider(), op="chat_completions", model=MODEL, stream=False)
    up = openai_anthropic.PAIR.request(body, ctx)
    assert up.body is not None and orjson.loads(up.body)["max_tokens"] == 4096


def test_passthrough_leaves_body_alone_without_override() -> None:
    ctx = RequestContext(provider=provider(), op="messages", model=MODEL, stream=False)
    up = anthropic_anthropic.PAIR.request({"model": MODEL, "messages": []}, ctx)
    assert up.body is None and up.headers == {}


def test_non_stream_body_is_held_until_the_end() -> None:
    tr = _response("openai_anthropic/response_text", stream=False)
    tr.on_headers(200, {"content-type": "application/json"})
    raw = (ROOT / "openai_anthropic" / "response_text.in.json").read_bytes()
    assert tr.on_body(raw[:10], False) == b""
    out = tr.on_body(raw[10:], True)
    assert out is not None and orjson.loads(out)["choices"][0]["message"]["content"] == "Hello, world!"


# --- the fake provider's Anthropic dialect ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "vertex", "message"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, False, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 5, "messages": []}, False, "at least one message"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}] * 2},
            False,
            "roles must alternate",
        ),
        ({"model": "m", "max_tokens": 5, "n": 1, "messages": [{"role": "user", "content": "a"}]}, False, "n: Extra"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, True, "model: Extra"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, True, "anthropic_version"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                    {"role": "user", "content": "b"},
                ],
            },
            False,
            "without `tool_result` blocks",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            False,
            "non-empty",
        ),
    ],
)
def test_fake_validates_like_anthropic(body: dict[str, Any], vertex: bool, message: str) -> None:
    problem = wire.validate(body, vertex=vertex)
    assert problem is not None and message in problem


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeProviderThread(name="fake") as fp:
        yield fp


def test_fake_requires_anthropic_version_and_answers_in_its_schema(fake: FakeProviderThread) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(fake.url + "/v1/messages", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in r.json()["error"]["message"]
    fake.set_behaviour(error_status=429, retry_after=3, error_count=1)
    r = httpx.post(fake.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
    fake.reset_behaviour()


def test_translation_round_trip_through_the_fake(fake: FakeProviderThread) -> None:
    """OpenAI request -> pair -> fake (Anthropic and Vertex paths) -> pair -> a chat completion the SDK reads."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools}
    vertex_path = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-x:"
    for pair, path in ((openai_anthropic.PAIR, "/v1/messages"), (openai_anthropic.VERTEX_PAIR, vertex_path)):
        for stream in (False, True):
            body = {**chat, "stream": stream}
            ctx = RequestContext(provider=provider(), op="chat_completions", model=MODEL, stream=stream)
            up = pair.request(copy.deepcopy(body), ctx)
            url = fake.url + (path + ("streamRawPredict" if stream else "rawPredict") if path.endswith(":") else path)
            r = httpx.post(url, content=up.body, headers={**up.headers, "content-type": "application/json"})
            assert r.status_code == 200, r.text
            tr = pair.response(ctx, client_wants_usage=True)
            tr.on_headers(r.status_code, dict(r.headers))
            out = tr.on_body(r.content, True)
            assert out is not None
            if not stream:
                completion = openai.types.chat.ChatCompletion.model_validate_json(out)
                [call] = completion.choices[0].message.tool_calls or []
                assert call.type == "function" and json.loads(call.function.arguments) == {"city": "Paris"}
            else:
                client = _sdk(200, out, "text/event-stream")
                with client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "x"}]) as s:
                    final = s.get_final_completion()
                [call] = final.choices[0].message.tool_calls or []
                assert json.loads(call.function.arguments) == {"city": "Paris"}
            assert tr.usage is not None and tr.usage.input == 3 and tr.usage.output is not None
