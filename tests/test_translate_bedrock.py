"""OpenAI <-> Amazon Bedrock translation: golden files, stream re-feeding, SDK schema checks, SigV4.

Golden cases live in ``tests/golden_translate/openai_bedrock/`` (Converse) and
``tests/golden_translate/openai_bedrock_titan/`` (Titan embeddings), named by kind:

- ``request_*.in.json``: ``{model, stream?, settings?, body}`` -> ``.out.json``
  ``{path, headers, body}`` or ``{error}``;
- ``response_*`` / ``error_*``: ``{model, status, headers, body | raw}`` -> ``.out.json``
  ``{headers, body, usage}``;
- ``stream_*``: ``{model, client_wants_usage, headers, events, truncate_bytes?}`` plus the
  recorded ``.in.eventstream`` bytes -> ``.out.sse`` (what the client receives) and
  ``.out.json`` (header changes and usage). Every stream is re-fed split at every byte
  position, and byte by byte, and must produce the same output.

Regenerate after an intended change, then review the diff::

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_translate_bedrock.py
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from extproc import credentials
from extproc.contract import AuthConfig, ProviderConfig
from extproc.credentials import CredentialError, SignedRequest
from extproc.credentials import aws as credentials_aws
from extproc.operations import OPERATIONS_BY_NAME
from extproc.providers import bedrock as provider_module
from extproc.translate import select, stamps
from extproc.translate.base import RequestContext, TranslationError
from extproc.translate.openai_bedrock import converse_request
from extproc.translate.openai_bedrock_response import BedrockChatResponse
from extproc.translate.openai_bedrock_titan import TitanEmbeddingsResponse
from fakeprovider import bedrock_wire as bw
from tests import golden_files

GOLDEN = Path(__file__).resolve().parent / "golden_translate"
CREATED = 1_700_000_000


@pytest.fixture(autouse=True)
def _pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stamps, "now", lambda: CREATED)


PAIRS = ("openai_bedrock", "openai_bedrock_titan")
CASES = [(pair, p.name.removesuffix(".in.json")) for pair in PAIRS for p in sorted((GOLDEN / pair).glob("*.in.json"))]


def provider(settings: dict[str, str] | None = None, auth: AuthConfig | None = None) -> ProviderConfig:
    return ProviderConfig(
        id="default/bedrock/bedrock",
        backend="default/bedrock",
        kind="bedrock",
        host="bedrock-runtime.us-east-1.amazonaws.com",
        settings=settings or {},
        auth=auth,
    )


def ctx_for(case: dict[str, Any]) -> RequestContext:
    return RequestContext(
        provider=provider(case.get("settings")),
        op=case.get("op", "chat_completions"),
        model=case["model"],
        stream=bool(case.get("stream")),
    )


def response_for(pair: str, case: dict[str, Any]) -> BedrockChatResponse | TitanEmbeddingsResponse:
    ctx = ctx_for(case)
    if pair == "openai_bedrock_titan":
        return TitanEmbeddingsResponse(ctx, encoding_format=case.get("encoding_format", "float"))
    return BedrockChatResponse(ctx, client_wants_usage=case.get("client_wants_usage", True))


def stream_bytes(case: dict[str, Any]) -> bytes:
    frames = []
    for event in case["events"]:
        if "exception" in event:
            frames.append(bw.exception_frame(event["exception"], event["message"]))
        else:
            frames.append(bw.event_frame(event["event"], event["payload"]))
    data = b"".join(frames)
    return data[: len(data) - case.get("truncate_bytes", 0)]


def feed(tr: BedrockChatResponse, data: bytes, cuts: list[int]) -> bytes:
    out = b""
    start = 0
    for cut in cuts:
        out += tr.on_body(data[start:cut], False) or b""
        start = cut
    return out + (tr.on_body(data[start:], True) or b"")


def usage_dict(tr: Any) -> dict[str, Any] | None:
    return dataclasses.asdict(tr.usage) if tr.usage is not None else None


def run_case(pair: str, name: str, case: dict[str, Any]) -> dict[str, Any]:
    """The translation's result for one golden case (streams also write `.out.sse`)."""
    if name.startswith("request_"):
        ctx = ctx_for(case)
        translator = select("openai", "bedrock" if pair == "openai_bedrock" else "bedrock_titan")
        assert translator is not None
        body = copy.deepcopy(case["body"])
        try:
            up = translator.request(body, ctx)
        except TranslationError as exc:
            return {"error": {"status": exc.status, "code": exc.code, "param": exc.param, "message": exc.message}}
        assert body == case["body"], "request translation must not mutate the client's body"
        assert up.body is not None
        op = OPERATIONS_BY_NAME[ctx.op]
        path = provider_module.path(ctx.provider, op, ctx.model, ctx.stream)  # type: ignore[arg-type]
        return {"path": path, "headers": up.headers, "body": orjson.loads(up.body)}
    tr = response_for(pair, case)
    changes = tr.on_headers(case.get("status", 200), case["headers"])
    result: dict[str, Any] = {"headers": {"set": changes.set, "remove": changes.remove}, "streaming": tr.streaming}
    if name.startswith("stream_"):
        assert isinstance(tr, BedrockChatResponse)
        data = stream_bytes(case)
        golden_files.check(GOLDEN / pair / f"{name}.in.eventstream", data)  # the recorded bytes of the events
        golden_files.check(GOLDEN / pair / f"{name}.out.sse", feed(tr, data, []))
        result["usage"] = usage_dict(tr)
        return result
    raw = case["raw"].encode() if "raw" in case else orjson.dumps(case["body"])
    out = tr.on_body(raw, True)
    assert out is not None
    result["body"] = orjson.loads(out)
    result["usage"] = usage_dict(tr)
    return result


@pytest.mark.parametrize(("pair", "name"), CASES, ids=[f"{p}/{n}" for p, n in CASES])
def test_golden(pair: str, name: str) -> None:
    case = json.loads((GOLDEN / pair / f"{name}.in.json").read_text())
    result = run_case(pair, name, case)
    golden_files.check(GOLDEN / pair / f"{name}.out.json", golden_files.json_text(result, sort_keys=True))


STREAM_CASES = [n for p, n in CASES if p == "openai_bedrock" and n.startswith("stream_")]


@pytest.mark.parametrize("name", STREAM_CASES)
def test_stream_split_anywhere_gives_the_same_output(name: str) -> None:
    case = json.loads((GOLDEN / "openai_bedrock" / f"{name}.in.json").read_text())
    data = (GOLDEN / "openai_bedrock" / f"{name}.in.eventstream").read_bytes()
    expected = (GOLDEN / "openai_bedrock" / f"{name}.out.sse").read_bytes()

    def run(cuts: list[int]) -> bytes:
        tr = response_for("openai_bedrock", case)
        tr.on_headers(200, case["headers"])
        return feed(tr, data, cuts)  # type: ignore[arg-type]

    for cut in range(1, len(data)):
        assert run([cut]) == expected, f"split at byte {cut}"
    assert run(list(range(1, len(data)))) == expected, "byte by byte"
    thirds = [len(data) // 3, 2 * len(data) // 3]
    assert run(thirds) == expected


def sse_events(sse: bytes) -> list[Any]:
    out = []
    for block in sse.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            out.append(block[6:] if block[6:] == "[DONE]" else json.loads(block[6:]))
    return out


@pytest.mark.parametrize("name", STREAM_CASES)
def test_stream_chunks_parse_as_openai_sdk_types(name: str) -> None:
    events = sse_events((GOLDEN / "openai_bedrock" / f"{name}.out.sse").read_bytes())
    for event in events:
        if event == "[DONE]":
            continue
        if "error" in event:
            assert event is events[-1], "an error event ends the stream"
            assert event["error"]["message"]
            continue
        ChatCompletionChunk.model_validate(event)


def test_streamed_tool_call_arguments_reassemble() -> None:
    events = sse_events((GOLDEN / "openai_bedrock" / "stream_tool_calls.out.sse").read_bytes())
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for event in events[:-1]:
        for choice in event["choices"]:
            finish = choice["finish_reason"] or finish
            for call in choice["delta"].get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.get("id") or ""
                slot["name"] += (call.get("function") or {}).get("name") or ""
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
    assert events[-1] == "[DONE]" and finish == "tool_calls"
    assert {i: (c["id"], c["name"], json.loads(c["arguments"])) for i, c in calls.items()} == {
        0: ("tooluse_P", "get_weather", {"city": "Paris"}),
        1: ("tooluse_R", "get_weather", {"city": "Rome", "unit": "C"}),
    }


@pytest.mark.parametrize("name", ["stream_cut_mid_frame", "stream_exception_midway", "stream_model_stream_error"])
def test_broken_streams_end_with_an_error_and_no_done(name: str) -> None:
    events = sse_events((GOLDEN / "openai_bedrock" / f"{name}.out.sse").read_bytes())
    assert "[DONE]" not in events
    assert "error" in events[-1]
    assert all(c["finish_reason"] is None for e in events[:-1] for c in e["choices"])


def test_json_responses_parse_as_openai_sdk_types() -> None:
    for pair, name in CASES:
        if not name.startswith("response_"):
            continue
        body = json.loads((GOLDEN / pair / f"{name}.out.json").read_text())["body"]
        (ChatCompletion if pair == "openai_bedrock" else CreateEmbeddingResponse).model_validate(body)


# --- request details -----------------------------------------------------------------------


def converse(body: dict[str, Any], *, model: str = "anthropic.claude-3-haiku", **settings: str) -> dict[str, Any]:
    ctx = RequestContext(provider=provider(settings), op="chat_completions", model=model, stream=False)
    return converse_request(body, ctx)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_request_translation_is_idempotent() -> None:
    case = json.loads((GOLDEN / "openai_bedrock" / "request_multiturn_tools.in.json").read_text())
    pair = select("openai", "bedrock")
    assert pair is not None
    first = pair.request(case["body"], ctx_for(case))
    second = pair.request(case["body"], ctx_for(case))
    assert first.body == second.body and first.headers == second.headers


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
        (None, None),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    body: dict[str, Any] = {"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        body["tool_choice"] = choice
    config = converse(body)["toolConfig"]
    assert config.get("toolChoice") == expected
    assert config["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
    ]


def test_tool_choice_none_drops_tools() -> None:
    body = {"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}
    assert "toolConfig" not in converse(body)


@pytest.mark.parametrize(
    ("effort", "max_tokens", "expected"),
    [
        ("minimal", None, 1024),
        ("low", None, 1024),
        ("medium", None, 2048),
        ("high", None, 4096),
        ("high", 3000, 2999),
        ("low", 1000, None),
        ("none", None, None),
    ],
)
def test_reasoning_budget(effort: str, max_tokens: int | None, expected: int | None) -> None:
    body: dict[str, Any] = {"messages": [user("x")], "reasoning_effort": effort}
    if max_tokens:
        body["max_tokens"] = max_tokens
    fields = converse(body).get("additionalModelRequestFields")
    if expected is None:
        assert fields is None
    else:
        assert fields == {"reasoning_config": {"type": "enabled", "budget_tokens": expected}}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"guardrail.identifier": "g1", "guardrail.version": "2"},
            {"guardrailIdentifier": "g1", "guardrailVersion": "2"},
        ),
        ({"guardrailIdentifier": "g1"}, {"guardrailIdentifier": "g1", "guardrailVersion": "DRAFT"}),
        ({"guardrail": '{"identifier": "g9", "version": "1"}'}, {"guardrailIdentifier": "g9", "guardrailVersion": "1"}),
        ({"region": "us-west-2"}, None),
    ],
)
def test_guardrail_from_settings(settings: dict[str, str], expected: dict[str, str] | None) -> None:
    assert converse({"messages": [user("x")]}, **settings).get("guardrailConfig") == expected


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"messages": []}, "non-empty"),
        ({"messages": [user("x")], "n": 2}, "one choice"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input_audio"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}],
                    }
                ]
            },
            "image/bmp",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}
                ]
            },
            "base64",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [{"role": "function", "content": "x"}]}, "function"),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            "JSON object",
        ),
        ({"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "c"}}]}, "function tools"),
    ],
)
def test_requests_converse_cannot_express_are_400(body: dict[str, Any], match: str) -> None:
    with pytest.raises(TranslationError, match=match) as info:
        converse(body)
    assert info.value.status == 400


def test_http_image_error_names_the_field() -> None:
    body = {
        "messages": [
            user("a"),
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]},
        ]
    }
    with pytest.raises(TranslationError) as info:
        converse(body)
    assert info.value.param == "messages[1].content[0].image_url.url"
    assert info.value.code == "unsupported_image_url"
    assert "data: URL" in info.value.message


# --- provider module -----------------------------------------------------------------------


def test_paths_encode_the_model_id_as_one_segment() -> None:
    chat, emb = OPERATIONS_BY_NAME["chat_completions"], OPERATIONS_BY_NAME["embeddings"]
    p = provider()
    arn = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    assert provider_module.path(p, chat, "anthropic.claude-v2:1", False) == "/model/anthropic.claude-v2%3A1/converse"
    assert provider_module.path(p, chat, arn, True).endswith(
        "inference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
    )
    assert (
        provider_module.path(p, emb, "amazon.titan-embed-text-v2:0", False)
        == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    )
    assert provider_module.path(dataclasses.replace(p, path="/custom"), chat, "m", False) == "/custom"


def test_api_names_select_pairs_or_a_clean_400() -> None:
    p = provider()
    assert provider_module.api(p, OPERATIONS_BY_NAME["chat_completions"], "m") == "bedrock"
    assert provider_module.api(p, OPERATIONS_BY_NAME["embeddings"], "amazon.titan-embed-text-v2:0") == "bedrock_titan"
    assert select("openai", provider_module.api(p, OPERATIONS_BY_NAME["embeddings"], "cohere.embed-english-v3")) is None
    assert select("openai", provider_module.api(p, OPERATIONS_BY_NAME["completions"], "m")) is None
    assert provider_module.input_includes_cached is False


def test_region_precedence() -> None:
    assert provider_module.region(provider()) == "us-east-1"
    assert provider_module.region(provider({"region": "eu-west-1"})) == "eu-west-1"
    auth = AuthConfig(kind="aws", params={"region": "ap-south-1"})
    assert provider_module.region(provider({"region": "eu-west-1"}, auth)) == "ap-south-1"


# --- responses -----------------------------------------------------------------------------


def chat_response(*, wants_usage: bool = True) -> BedrockChatResponse:
    ctx = RequestContext(provider=provider(), op="chat_completions", model="m", stream=True)
    tr = BedrockChatResponse(ctx, client_wants_usage=wants_usage)
    tr.on_headers(200, {"content-type": bw.EVENTSTREAM_CONTENT_TYPE, "x-amzn-requestid": "r"})
    return tr


def test_corrupt_frame_ends_with_an_error_and_ignores_the_rest() -> None:
    tr = chat_response()
    good = bw.event_frame("messageStart", {"role": "assistant"})
    bad = bytearray(bw.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
    bad[-1] ^= 1
    out = sse_events(feed(tr, good + bytes(bad) + good, []))
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert out[-1]["error"]["code"] == "bad_stream" and len(out) == 2


def test_unmodelled_error_frame() -> None:
    tr = chat_response()
    frame = bw.encode_frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    [event] = sse_events(feed(tr, frame, []))
    assert event["error"]["message"] == "boom" and event["error"]["code"] == "InternalFailure"


def test_metadata_without_message_stop_is_an_error() -> None:
    tr = chat_response(wants_usage=False)
    data = bw.event_frame("messageStart", {"role": "assistant"}) + bw.event_frame(
        "metadata", {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}
    )
    events = sse_events(feed(tr, data, []))
    assert "error" in events[-1] and "[DONE]" not in events
    assert tr.usage is not None and tr.usage.input == 1


def test_usage_normalization_counts_cache_in_the_input() -> None:
    tr = chat_response()
    data = b"".join(
        [
            bw.event_frame("messageStart", {"role": "assistant"}),
            bw.event_frame("messageStop", {"stopReason": "end_turn"}),
            bw.event_frame(
                "metadata",
                {"usage": {"inputTokens": 5, "outputTokens": 2, "cacheReadInputTokens": 7, "cacheWriteInputTokens": 3}},
            ),
        ]
    )
    events = sse_events(feed(tr, data, []))
    assert events[-2]["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 2,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 7},
    }
    assert tr.usage is not None and (tr.usage.input, tr.usage.cache_read, tr.usage.cache_write) == (15, 7, 3)


def test_pair_response_ids_come_from_the_request_id() -> None:
    pair = select("openai", "bedrock")
    assert pair is not None
    tr = pair.response(
        RequestContext(provider=provider(), op="chat_completions", model="m", stream=False), client_wants_usage=False
    )
    changes = tr.on_headers(200, {"content-type": "application/json", "x-amzn-requestid": "abc"})
    assert changes.set == {"content-type": "application/json"} and changes.remove == ["content-length"]
    body = bw.converse_reply(text="hi there", tool=None, usage={"inputTokens": 2})
    assert orjson.loads(tr.on_body(body, True) or b"")["id"] == "chatcmpl-abc"


def test_titan_base64_encoding() -> None:
    ctx = RequestContext(provider=provider(), op="embeddings", model="amazon.titan-embed-text-v2:0", stream=False)
    tr = TitanEmbeddingsResponse(ctx, encoding_format="base64")
    tr.on_headers(200, {"content-type": "application/json"})
    out = orjson.loads(tr.on_body(orjson.dumps({"embedding": [0.5, -1.0], "inputTextTokenCount": 2}), True) or b"")
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)
    assert tr.usage is not None and tr.usage.input == 2 and tr.usage.output is None


# --- SigV4 (extproc.credentials.aws), checked by the fake's botocore verifier ---------------

AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No ambient AWS credentials, and never a probe of instance metadata (no network here)."""
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    credentials_aws.reset_default_chain()
    yield monkeypatch
    credentials_aws.reset_default_chain()


def aws_provider(**params: str) -> ProviderConfig:
    return provider({"region": "eu-west-1"}, AuthConfig(kind="aws", header="", prefix="", params=params))


def signed(p: ProviderConfig, body: bytes = b'{"messages":[]}') -> tuple[dict[str, str], SignedRequest]:
    request = SignedRequest(
        method="POST",
        authority="bedrock-runtime.eu-west-1.amazonaws.com",
        path="/model/anthropic.claude-v2%3A1/converse",
        headers={"content-type": "application/json"},
        body=body,
    )
    return credentials.auth_headers(p, request), request


def verify(headers: dict[str, str], request: SignedRequest, *, body: bytes | None = None) -> bw.AuthFailure | None:
    received = {**request.headers, **headers, "host": "bedrock-runtime.us-east-1.amazonaws.com"}  # provider.host
    return bw.verify_sigv4(
        method=request.method, path=request.path, headers=received, body=request.body if body is None else body
    )


STATIC = {"access_key_id": bw.TEST_ACCESS_KEY, "secret_access_key": bw.TEST_SECRET_KEY}


def test_sigv4_with_secret_credentials_verifies(clean_aws_env: pytest.MonkeyPatch) -> None:
    headers, request = signed(aws_provider(**STATIC))
    assert set(headers) == {"authorization", "x-amz-date"}
    assert "/eu-west-1/bedrock/aws4_request" in headers["authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date," in headers["authorization"]
    assert verify(headers, request) is None


def test_sigv4_session_token(clean_aws_env: pytest.MonkeyPatch) -> None:
    p = aws_provider(
        access_key_id=bw.TEST_SESSION_ACCESS_KEY,
        secret_access_key=bw.TEST_SESSION_SECRET_KEY,
        session_token=bw.TEST_SESSION_TOKEN,
        region="us-west-2",
    )
    headers, request = signed(p)
    assert headers["x-amz-security-token"] == bw.TEST_SESSION_TOKEN
    assert "/us-west-2/bedrock/" in headers["authorization"]
    assert verify(headers, request) is None
    without_token = {k: v for k, v in headers.items() if k != "x-amz-security-token"}
    failure = verify(without_token, request)
    assert failure is not None and failure.error_type == "UnrecognizedClientException"


def test_sigv4_covers_the_body_and_the_secret(clean_aws_env: pytest.MonkeyPatch) -> None:
    headers, request = signed(aws_provider(**STATIC))
    failure = verify(headers, request, body=b'{"messages":[1]}')
    assert failure is not None and failure.error_type == "InvalidSignatureException"
    headers, request = signed(aws_provider(access_key_id=bw.TEST_ACCESS_KEY, secret_access_key="wrong"))
    failure = verify(headers, request)
    assert failure is not None and failure.error_type == "InvalidSignatureException"
    headers, request = signed(aws_provider(access_key_id="AKIDUNKNOWN", secret_access_key="x"))
    failure = verify(headers, request)
    assert failure is not None and failure.error_type == "UnrecognizedClientException"


def test_incomplete_secret_names_the_missing_key(clean_aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialError, match="has no secretKey") as info:
        signed(aws_provider(access_key_id=bw.TEST_ACCESS_KEY))
    assert bw.TEST_ACCESS_KEY not in str(info.value)
    with pytest.raises(CredentialError, match="has no accessKey"):
        signed(aws_provider(secret_access_key=bw.TEST_SECRET_KEY))


def test_default_chain_from_environment(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", bw.TEST_SESSION_ACCESS_KEY)
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", bw.TEST_SESSION_SECRET_KEY)
    clean_aws_env.setenv("AWS_SESSION_TOKEN", bw.TEST_SESSION_TOKEN)
    headers, request = signed(aws_provider())
    assert verify(headers, request) is None


def test_no_credentials_anywhere_is_a_credential_error(clean_aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialError, match="no AWS credentials for provider default/bedrock/bedrock"):
        signed(aws_provider())
