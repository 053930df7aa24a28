"""Anthropic Messages client -> OpenAI chat completions provider: golden files and units.

Golden cases live in ``tests/golden_translate/anthropic_openai/``:

- ``request_<case>.in.json`` (Anthropic body) -> ``.out.json`` (OpenAI body and upstream path);
- ``response_<case>.in.json`` (chat.completion) -> ``.out.json`` (Anthropic message);
- ``error_<status>.in.json`` (provider error body) -> ``.out.json`` (Anthropic error);
- ``stream_<case>.in.sse`` (recorded OpenAI chunks) -> ``.out.sse`` (Anthropic events), byte for
  byte, and the same output whatever byte boundaries the stream is cut at.

Regenerate after an intended change, then review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_translate_anthropic_openai.py

Translated messages and streams are also fed to the official anthropic SDK's own
types and stream accumulator, so a shape the SDK cannot read fails here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from extproc.contract import ProviderConfig
from extproc.sse import SSEDecoder
from extproc.translate import select
from extproc.translate.anthropic_openai import PAIR, MessagesFromOpenAI, translate_request
from extproc.translate.base import RequestContext
from extproc.usage import Usage
from tests import golden_files

GOLDEN = Path(__file__).resolve().parent / "golden_translate" / "anthropic_openai"
PROVIDER = ProviderConfig(id="default/b/p", backend="default/b", kind="openai", host="127.0.0.1")


def _cases(prefix: str, suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in GOLDEN.glob(f"{prefix}_*{suffix}"))


def _check_json(name: str, got: Any) -> None:
    golden_files.check(GOLDEN / f"{name}.out.json", golden_files.json_text(got))


def _ctx(*, model: str = "", stream: bool = False, provider: ProviderConfig | None = PROVIDER) -> RequestContext:
    return RequestContext(provider=provider, op="messages", model=model, stream=stream)


def _respond(status: int, content_type: str, chunks: list[bytes]) -> tuple[MessagesFromOpenAI, bytes]:
    tr = PAIR.response(_ctx(), client_wants_usage=False)
    tr.on_headers(status, {"content-type": content_type, ":status": str(status)})
    out = b""
    for n, chunk in enumerate(chunks):
        piece = tr.on_body(chunk, n == len(chunks) - 1)
        out += chunk if piece is None else piece
    return tr, out


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    decoder = SSEDecoder()
    events = decoder.feed(raw)
    assert decoder.flush() == b"", "the translated stream ends mid-event"
    return [(ev.event, orjson.loads(ev.data)) for ev in events]


# --- golden ----------------------------------------------------------------------------------


def test_pair_is_in_the_table() -> None:
    assert select("anthropic", "openai") is PAIR


@pytest.mark.parametrize("case", _cases("request", ".in.json"))
def test_request_golden(case: str) -> None:
    body = json.loads((GOLDEN / f"{case}.in.json").read_text())
    before = copy.deepcopy(body)
    ctx = _ctx(model=body["model"], stream=body.get("stream") is True)
    first = PAIR.request(body, ctx)
    again = PAIR.request(body, ctx)
    assert body == before, "request translation must not change its input"
    assert first.body == again.body and first.path == again.path, "request translation must be idempotent"
    assert first.body is not None
    _check_json(case, {"path": first.path, "body": orjson.loads(first.body)})


@pytest.mark.parametrize("case", _cases("response", ".in.json"))
def test_response_golden(case: str) -> None:
    raw = (GOLDEN / f"{case}.in.json").read_bytes()
    tr, out = _respond(200, "application/json", [raw])
    got = orjson.loads(out)
    Message.model_validate(got)
    _check_json(case, got)
    doc = orjson.loads(raw)
    assert tr.response_model == doc["model"]
    if doc.get("usage"):
        cached = doc["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
        assert tr.usage == Usage(doc["usage"]["prompt_tokens"], doc["usage"]["completion_tokens"], cached)
        assert got["usage"]["input_tokens"] + got["usage"]["cache_read_input_tokens"] == tr.usage.input
    else:
        assert tr.usage is None, "no usage reported is None, not 0"


@pytest.mark.parametrize("case", _cases("error", ".in.json"))
def test_error_golden(case: str) -> None:
    status = int(case.split("_")[1])
    tr, out = _respond(status, "application/json", [(GOLDEN / f"{case}.in.json").read_bytes()])
    got = orjson.loads(out)
    assert set(got) == {"type", "error"} and got["type"] == "error" and set(got["error"]) == {"type", "message"}
    _check_json(case, got)
    assert tr.usage is None


STREAM_USAGE = {
    "stream_text": Usage(input=1200, output=4, cache_read=1024),
    "stream_tool_calls": Usage(input=80, output=40, cache_read=0),
    "stream_interleaved_tools": None,
    "stream_cut": None,
    "stream_cut_mid_event": None,
    "stream_error_event": None,
    "stream_finish_no_done": Usage(input=5, output=1),
}


@pytest.mark.parametrize("case", _cases("stream", ".in.sse"))
def test_stream_golden(case: str) -> None:
    raw = (GOLDEN / f"{case}.in.sse").read_bytes()
    tr, out = _respond(200, "text/event-stream; charset=utf-8", [raw])
    assert tr.streaming
    golden_files.check(GOLDEN / f"{case}.out.sse", out)
    assert tr.usage == STREAM_USAGE[case]
    assert tr.response_model == orjson.loads(raw.split(b"\n", 1)[0][6:])["model"]


@pytest.mark.parametrize("case", _cases("stream", ".in.sse"))
def test_stream_same_output_at_every_byte_boundary(case: str) -> None:
    raw = (GOLDEN / f"{case}.in.sse").read_bytes()
    expected = (GOLDEN / f"{case}.out.sse").read_bytes()
    for cut in range(1, len(raw)):
        tr, out = _respond(200, "text/event-stream", [raw[:cut], raw[cut:]])
        assert out == expected, f"{case}: different output when split at byte {cut}"
        assert tr.usage == STREAM_USAGE[case]
    _, out = _respond(200, "text/event-stream", [raw[i : i + 1] for i in range(len(raw))] + [b""])
    assert out == expected, f"{case}: different output when fed byte by byte"
    _, out = _respond(200, "text/event-stream", [raw[i : i + 7] for i in range(0, len(raw), 7)])
    assert out == expected


# --- streams through the anthropic SDK's own accumulator --------------------------------------


def _sdk_message(out: bytes) -> tuple[anthropic.types.Message | None, list[str]]:
    """Accumulate events as `client.messages.stream()` does; (final message or None, event types)."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    kinds = []
    for kind, data in _events(out):
        assert data["type"] == kind, "`event:` and the JSON `type` must agree"
        kinds.append(kind)
        if kind != "error":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    return snapshot, kinds


def test_stream_text_through_sdk_accumulator() -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_text.in.sse").read_bytes()])
    message, kinds = _sdk_message(out)
    assert message is not None and kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Héllo wörld ☕!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        176,
        1024,
        4,
    )


def test_streamed_tool_calls_are_reassembled() -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_tool_calls.in.sse").read_bytes()])
    message, _ = _sdk_message(out)
    assert message is not None and message.stop_reason == "tool_use"
    text, paris, rome = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert paris.type == "tool_use" and (paris.id, paris.name, paris.input) == (
        "call_Paris",
        "get_weather",
        {"city": "Paris", "unit": "c"},
    )
    assert rome.type == "tool_use" and (rome.id, rome.input) == ("call_Rome", {"city": "Rome"})


def test_interleaved_tool_calls_are_reassembled_by_index() -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_interleaved_tools.in.sse").read_bytes()])
    message, kinds = _sdk_message(out)
    assert message is not None
    assert [(b.id, b.name, b.input) for b in message.content] == [  # type: ignore[union-attr]
        ("call_0", "a", {"x": 1}),
        ("call_1", "b", {"y": 2}),
        ("call_2", "c", {"z": 3}),
    ]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 3
    assert message.usage.output_tokens == 0  # the provider reported none; metrics get None (golden test)


@pytest.mark.parametrize("case", ["stream_cut", "stream_cut_mid_event", "stream_error_event"])
def test_cut_or_failed_stream_ends_with_error_and_no_message_stop(case: str) -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / f"{case}.in.sse").read_bytes()])
    _, kinds = _sdk_message(out)
    assert kinds[-1] == "error" and "message_stop" not in kinds and "message_delta" not in kinds


def test_error_event_maps_upstream_code() -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_error_event.in.sse").read_bytes()])
    _, data = _events(out)[-1]
    assert data["error"] == {"type": "overloaded_error", "message": "Engine overloaded"}


def test_cut_stream_raises_in_the_sdk() -> None:
    """The SDK's own SSE loop turns `event: error` into an exception (here, without a server)."""
    from anthropic import _base_client

    http: Any = vars(_base_client).get("httpx2") or vars(_base_client)["httpx"]  # the SDK's own HTTP library
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_cut.in.sse").read_bytes()])

    def handler(request: Any) -> Any:
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    transport = http.MockTransport(handler)
    client = anthropic.Anthropic(
        api_key="k", base_url="http://t", max_retries=0, http_client=http.Client(transport=transport)
    )
    stream = client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError, match="ended before the response was complete"), stream as s:
        for _ in s.text_stream:
            pass


def test_stream_finished_without_done_still_completes() -> None:
    _, out = _respond(200, "text/event-stream", [(GOLDEN / "stream_finish_no_done.in.sse").read_bytes()])
    message, kinds = _sdk_message(out)
    assert kinds[-1] == "message_stop" and message is not None and message.stop_reason == "max_tokens"


# --- request units ---------------------------------------------------------------------------


def _req(**fields: Any) -> dict[str, Any]:
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **fields}
    return translate_request(body, model="claude")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "tool", "name": "f"}, {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required", "parallel_tool_calls": True}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    out = _req(tools=[{"name": "f", "input_schema": {"type": "object"}}], tool_choice=choice)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_tool_choice_without_client_tools_is_dropped() -> None:
    out = _req(tools=[{"type": "web_search_20250305", "name": "web_search"}], tool_choice={"type": "any"})
    assert "tools" not in out and "tool_choice" not in out


def test_model_override_and_paths() -> None:
    """The pair names the operation; the provider module (OpenAI, Azure, ...) builds its path."""
    from extproc.operations import OPERATIONS_BY_NAME
    from extproc.providers import module_for

    body = {"model": "claude-x", "max_tokens": 5, "messages": []}
    up = PAIR.request(body, _ctx(model="gpt-4o"))
    assert orjson.loads(up.body or b"")["model"] == "gpt-4o" and up.op == "chat_completions" and up.path is None
    chat = OPERATIONS_BY_NAME["chat_completions"]
    prefixed = ProviderConfig(id="a/b/c", backend="a/b", kind="openai", host="h", path_prefix="/api/openai/v1")
    assert module_for("openai").path(prefixed, chat, "gpt-4o", False) == "/api/openai/v1/chat/completions"  # type: ignore[union-attr]
    azure = ProviderConfig(
        id="a/b/c",
        backend="a/b",
        kind="azureopenai",
        host="h",
        path_prefix="",
        settings={"deploymentName": "d", "apiVersion": "2024-10-21"},
    )
    assert (
        module_for("azureopenai").path(azure, chat, "gpt-4o", False)  # type: ignore[union-attr]
        == "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    )
    fixed = ProviderConfig(id="a/b/c", backend="a/b", kind="openai", host="h", path="/custom/chat")
    assert orjson.loads(PAIR.request(body, _ctx(provider=fixed)).body or b"")["model"] == "claude-x"


def test_non_stream_request_has_no_stream_options() -> None:
    out = _req(stream=False)
    assert "stream" not in out and "stream_options" not in out
    assert _req(stream=True)["stream_options"] == {"include_usage": True}


def test_user_only_tool_results_make_only_tool_messages() -> None:
    out = translate_request(
        {
            "model": "m",
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            ],
        },
        model="m",
    )
    assert out["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "ok"},
    ]


# --- response units --------------------------------------------------------------------------


def test_headers_for_json_and_stream() -> None:
    tr = PAIR.response(_ctx(), client_wants_usage=False)
    changes = tr.on_headers(200, {"content-type": "application/json", "content-length": "99"})
    assert not tr.streaming and changes.set == {"content-type": "application/json"}
    assert "content-length" in changes.remove
    tr = PAIR.response(_ctx(), client_wants_usage=False)
    changes = tr.on_headers(200, {"content-type": "text/event-stream"})
    assert tr.streaming and changes.set["content-type"].startswith("text/event-stream")


def test_error_with_stream_content_type_is_still_a_json_error() -> None:
    tr = PAIR.response(_ctx(), client_wants_usage=False)
    tr.on_headers(429, {"content-type": "text/event-stream", "retry-after": "3"})
    assert not tr.streaming
    out = tr.on_body(b'{"error": {"message": "slow down", "type": "requests"}}', True)
    assert orjson.loads(out or b"") == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


@pytest.mark.parametrize(
    ("status", "body", "etype", "message"),
    [
        (503, b"upstream connect error or disconnect/reset before headers", "overloaded_error", "upstream connect"),
        (502, b"", "api_error", "HTTP 502"),
        (504, b"upstream request timeout", "api_error", "upstream request timeout"),
        (422, b'{"detail": "bad"}', "invalid_request_error", '{"detail": "bad"}'),
        (413, b'{"error": "too big"}', "request_too_large", "too big"),
    ],
)
def test_non_openai_error_bodies(status: int, body: bytes, etype: str, message: str) -> None:
    _, out = _respond(status, "text/plain", [body])
    got = orjson.loads(out)
    assert got["error"]["type"] == etype and message in got["error"]["message"]


def test_gateway_made_anthropic_error_passes_unchanged() -> None:
    body = b'{"type":"error","error":{"type":"api_error","message":"The gateway could not authenticate upstream"}}'
    _, out = _respond(502, "application/json", [body])
    assert out == body


def test_buffered_body_in_pieces_is_translated_once_whole() -> None:
    raw = (GOLDEN / "response_text.in.json").read_bytes()
    _, out = _respond(200, "application/json", [raw[:10], raw[10:50], raw[50:]])
    assert orjson.loads(out) == json.loads((GOLDEN / "response_text.out.json").read_text())


def test_success_body_that_is_not_json_is_left_alone() -> None:
    tr, out = _respond(200, "application/json", [b"not json"])
    assert out == b"not json" and tr.usage is None
