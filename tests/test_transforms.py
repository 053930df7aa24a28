"""policies.ai request transforms: the manifest parser, the pure core and its golden cases.

Golden: each ``tests/golden_transforms/<case>.in.yaml`` holds an `ai` block as a manifest
writes it, the (client API, provider API) pair, the operation and the client's body; the
test parses the block (controlplane), builds the contract (extproc_config), compiles the
plan and runs the transform step and the real translation pair with its finalize hook,
as the attempt stage does. ``<case>.out.json`` is the body sent upstream.

    LLMGW_UPDATE_GOLDEN=1 pytest tests/test_transforms.py
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from controlplane.extproc_config import _transforms
from controlplane.gatewayapi import ai_transforms
from controlplane.ir import PromptCachingIR, TransformsIR
from extproc.attempt_stage import AttemptRequest
from extproc.contract import ExtprocConfig, PromptCachingConfig, ProviderConfig, TransformsConfig
from extproc.policies import cel, transforms
from extproc.translate import select
from extproc.translate.base import RequestContext, encode
from extproc.wire import MODEL_HEADER
from tests import golden_files
from tests.extproc_protos import (
    CLIENT_HEADERS,
    PROVIDER_ID,
    attributes,
    header_sets,
    host_metadata_text,
    http_headers,
    make_config,
)

GOLDEN = Path(__file__).resolve().parent / "golden_transforms"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
KIND_OF_API = {"openai": "openai", "anthropic": "anthropic", "bedrock": "bedrock"}


def _parse(ai: Any) -> tuple[TransformsIR | None, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    out = ai_transforms.parse(ai, where="spec.policies.ai", fail=lambda f, m, r="Invalid": problems.append((f, m)))
    return out, problems


def _plan(ai: Any) -> transforms.Plan:
    ir, problems = _parse(ai)
    assert not problems and ir is not None, problems
    config = _transforms(ir)
    assert config is not None
    # The contract's JSON round trip, as the config channel carries it.
    provider = ProviderConfig(id="ns/b/p", backend="ns/b", kind="openai", host="h", transforms=config)
    wire = ExtprocConfig(version="v", providers={"ns/b/p": provider}).to_json()
    back = ExtprocConfig.from_json(wire).providers["ns/b/p"]
    assert back.transforms == config
    plan = transforms.plan_for(back)
    assert plan is not None
    return plan


def _run(case: dict[str, Any]) -> Any:
    client_api, provider_api = case["pair"]
    plan = _plan(case["ai"])
    pair = select(client_api, provider_api)
    assert pair is not None
    body = case["body"]
    original = encode(body)
    request = transforms.request_view(case.get("headers", {}))
    changed = transforms.apply_request(body, plan, op=case["op"], client_api=client_api, request=request)
    finalize = None
    if client_api == provider_api:
        changed |= transforms.finalize(body, plan, provider_api=provider_api, request=request)
    else:
        finalize = partial(transforms.finalize, plan=plan, provider_api=provider_api, request=request)
    provider = ProviderConfig(id="ns/b/p", backend="ns/b", kind=KIND_OF_API[provider_api], host="h")
    ctx = RequestContext(provider=provider, op=case["op"], model=body.get("model", ""), stream=False, finalize=finalize)
    up = pair.request(body, ctx)
    sent = up.body if up.body is not None else (encode(body) if changed else original)
    return orjson.loads(sent)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    doc = yaml.safe_load((GOLDEN / f"{case}.in.yaml").read_text())
    golden_files.check(GOLDEN / f"{case}.out.json", golden_files.json_text(_run(doc), sort_keys=True))


def test_cases_exist() -> None:
    assert len(CASES) >= 5


# --- aliases -----------------------------------------------------------------------------------


def test_alias_exact_wins_then_longest_pattern_and_dots_are_literal() -> None:
    aliases = transforms.Aliases.of(
        {
            "gpt-4": "exact",
            "claude-haiku-3.5-*": "haiku-3.5",
            "claude-haiku-*": "haiku",
            "*-sonnet-*": "sonnet",
            "test.*": "dot",
        }
    )
    assert aliases.resolve("gpt-4") == "exact"
    assert aliases.resolve("claude-haiku-3.5-v1") == "haiku-3.5"
    assert aliases.resolve("claude-haiku-v1") == "haiku"
    assert aliases.resolve("other-sonnet-model") == "sonnet"
    assert aliases.resolve("test.v1") == "dot"
    assert aliases.resolve("testXv1") is None
    assert aliases.resolve("unmatched") is None


def test_alias_falls_back_to_the_model_the_router_routed_on() -> None:
    plan = _plan({"modelAliases": {"other": "x"}})
    body: dict[str, Any] = {"model": "fast", "messages": []}
    assert transforms.apply_request(body, plan, op="chat_completions", client_api="openai", routed_model="gpt-4o")
    assert body["model"] == "gpt-4o"
    body = {"model": "gpt-4o", "messages": []}
    assert not transforms.apply_request(body, plan, op="chat_completions", client_api="openai", routed_model="gpt-4o")


def test_gateway_aliases_keep_only_those_the_backends_agree_on() -> None:
    tables = [(("fast", "a"), ("smart", "s")), (("fast", "b"),), (("smart", "s"),), ()]
    assert ai_transforms.gateway_aliases(tables) == (("smart", "s"),)


def test_router_resolution_uses_the_gateway_table() -> None:
    table = {"fast": "gpt-4o-mini", "claude-*": "claude-sonnet-4-5"}
    assert transforms.resolve_alias("fast", table) == "gpt-4o-mini"
    assert transforms.resolve_alias("claude-latest", table) == "claude-sonnet-4-5"
    assert transforms.resolve_alias("gpt-4o", table) is None
    assert transforms.resolve_alias("fast", {}) is None


# --- field mutations ---------------------------------------------------------------------------


def test_defaults_only_when_absent_overrides_always_cel_wins_over_overrides() -> None:
    plan = _plan(
        {
            "defaults": [{"field": "temperature", "value": 0.5}, {"field": "top_p", "value": 0.9}],
            "overrides": [{"field": "n", "value": 1}, {"field": "user", "value": "gw"}],
            "transformations": [{"field": "user", "expression": "'cel-' + llmRequest.model"}],
        }
    )
    body: dict[str, Any] = {"model": "m", "temperature": 0.1, "n": 3, "user": "client"}
    transforms.apply_request(body, plan, op="chat_completions", client_api="openai")
    assert body == {"model": "m", "temperature": 0.1, "n": 1, "user": "cel-m", "top_p": 0.9}


def test_a_failing_expression_removes_its_field_and_null_sets_null() -> None:
    plan = _plan(
        {
            "transformations": [
                {"field": "seed", "expression": "llmRequest.missing + 1"},
                {"field": "stop", "expression": "null"},
            ]
        }
    )
    body: dict[str, Any] = {"model": "m", "seed": 1}
    assert transforms.apply_request(body, plan, op="chat_completions", client_api="openai")
    assert body == {"model": "m", "stop": None}


def test_expressions_see_the_request() -> None:
    plan = _plan({"transformations": [{"field": "user", "expression": "request.method + ' ' + request.path"}]})
    assert plan.reads_request
    body: dict[str, Any] = {"model": "m"}
    view = transforms.request_view({":method": "POST", ":path": "/v1/chat/completions?x=1", "x-a": "b"})
    assert view["pathAndQuery"] == "/v1/chat/completions?x=1" and view["headers"] == {"x-a": "b"}
    transforms.apply_request(body, plan, op="chat_completions", client_api="openai", request=view)
    assert body["user"] == "POST /v1/chat/completions"


def test_enrichment_only_on_chat_operations() -> None:
    plan = _plan({"prompt": {"append": [{"role": "user", "content": "x"}]}})
    body: dict[str, Any] = {"model": "m", "input": "text"}
    assert not transforms.apply_request(body, plan, op="embeddings", client_api="openai")
    assert body == {"model": "m", "input": "text"}


def test_anthropic_system_blocks_get_text_blocks_around_them() -> None:
    plan = _plan(
        {"prompt": {"prepend": [{"role": "SYSTEM", "content": "A"}], "append": [{"role": "system", "content": "Z"}]}}
    )
    body: dict[str, Any] = {"model": "m", "system": [{"type": "text", "text": "S"}], "messages": []}
    transforms.apply_request(body, plan, op="messages", client_api="anthropic")
    assert [b["text"] for b in body["system"]] == ["A", "S", "Z"]


# --- cache markers -----------------------------------------------------------------------------


def test_message_marker_offset_is_clamped() -> None:
    caching = PromptCachingConfig(cache_system=False, min_tokens=0, cache_message_offset=10)
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert transforms.mark_anthropic(body, caching)
    assert body["messages"][0]["content"] == [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][1]["content"] == "b"


def test_one_message_has_nothing_to_reuse() -> None:
    caching = PromptCachingConfig(min_tokens=0)
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": "only"}]}]}
    assert not transforms.mark_converse(body, caching)


def test_estimate_is_characters_over_four() -> None:
    assert transforms.estimate_tokens([{"text": "x" * 400}, {"n": 5}]) == 100


# --- the parser --------------------------------------------------------------------------------

BAD = [
    ({"modelAliases": {"*": "x"}}, "spec.policies.ai.modelAliases.*", "matches every model"),
    ({"modelAliases": {"a": "bad\nvalue"}}, "spec.policies.ai.modelAliases.a", "cannot be routed on"),
    ({"defaults": [{"field": "x"}]}, "spec.policies.ai.defaults[0].value", "is required"),
    (
        {"overrides": [{"field": "x", "value": 1}, {"field": "x", "value": 2}]},
        "spec.policies.ai.overrides[1].field",
        "listed twice",
    ),
    ({"defaults": []}, "spec.policies.ai.defaults", "non-empty list"),
    (
        {"transformations": [{"field": "x", "expression": "1 +"}]},
        "spec.policies.ai.transformations[0].expression",
        "not a valid CEL",
    ),
    (
        {"transformations": [{"field": "x", "expression": "jwt.sub"}]},
        "spec.policies.ai.transformations[0].expression",
        "reads jwt, which llmgw does not provide",
    ),
    (
        {"transformations": [{"field": "x", "expression": "request.startTime"}]},
        "spec.policies.ai.transformations[0].expression",
        "reads request.startTime",
    ),
    (
        {"prompt": {"prepend": [{"role": "tool", "content": "x"}]}},
        "spec.policies.ai.prompt.prepend[0].role",
        "must be one of",
    ),
    ({"prompt": {"middle": []}}, "spec.policies.ai.prompt.middle", "is not supported by llmgw"),
    ({"promptCaching": {"minTokens": -1}}, "spec.policies.ai.promptCaching.minTokens", "integer >= 0"),
    ({"promptCaching": {"cacheSystem": "yes"}}, "spec.policies.ai.promptCaching.cacheSystem", "true or false"),
]


@pytest.mark.parametrize(("ai", "field", "message"), BAD)
def test_each_bad_field_is_a_problem_naming_it(ai: dict[str, Any], field: str, message: str) -> None:
    _, problems = _parse(ai)
    assert [f for f, _ in problems] == [field]
    assert message in problems[0][1]


def test_prompt_caching_defaults_are_agentgateways() -> None:
    ir, problems = _parse({"promptCaching": {}})
    assert not problems and ir is not None
    assert ir.prompt_caching == PromptCachingIR(True, True, False, 1024, 0)


def test_provider_policies_merge_over_the_backends_field_by_field() -> None:
    backend, _ = _parse({"modelAliases": {"a": "b"}, "defaults": [{"field": "t", "value": 1}]})
    own, _ = _parse({"defaults": [{"field": "t", "value": 2}]})
    assert backend is not None and own is not None
    merged = backend.merged(own)
    assert merged.aliases == (("a", "b"),) and merged.defaults == (("t", 2),)
    assert backend.merged(None) is backend


def test_only_promptguard_is_left_to_the_caller() -> None:
    ir, problems = _parse({"promptGuard": {}})
    assert ir is None and problems == []


def test_contract_round_trip_keeps_caching() -> None:
    config = TransformsConfig(prompt_caching=PromptCachingConfig(min_tokens=7))
    assert TransformsConfig.from_dict(orjson.loads(orjson.dumps(config))) == config


def test_cel_context_is_converted_once_for_all_expressions() -> None:
    expr = cel.compile_expression("llmRequest.a + 1")
    ctx = cel.context(body={"a": 1}, request=None)
    assert cel.evaluate(expr, ctx) == (True, 2)
    assert cel.evaluate(cel.compile_expression("timestamp('2020-01-01T00:00:00Z')"), ctx) == (
        True,
        "2020-01-01T00:00:00Z",
    )
    assert cel.evaluate(cel.compile_expression("b'x'"), ctx) == (False, None)


def test_the_context_holds_only_the_body_fields_expressions_read() -> None:
    narrow = cel.compile_expression("has(llmRequest.temperature) ? llmRequest.max_tokens : 1")
    assert narrow.body_fields == frozenset({"temperature", "max_tokens"})
    whole = cel.compile_expression("llmRequest['max_tokens'] + size(llmRequest.messages)")
    assert whole.body_fields is None
    assert cel.body_fields([narrow, whole]) is None and cel.body_fields([narrow]) == narrow.body_fields
    body = {"max_tokens": 5, "messages": [1, 2]}
    assert cel.evaluate(narrow, cel.context(body=body, request=None, fields=narrow.body_fields)) == (True, 1)
    assert cel.evaluate(whole, cel.context(body=body, request=None)) == (True, 7)


# --- the attempt stage, driven with real ext_proc protos ---------------------------------------


def _attempt(config: ExtprocConfig, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    attrs = attributes({"xds.upstream_host_metadata": host_metadata_text(PROVIDER_ID)})
    ar = AttemptRequest(config=config)
    first = ar.on_request_headers(ep.ProcessingRequest(request_headers=http_headers(headers), attributes=attrs))
    assert first.WhichOneof("response") == "request_headers"
    resp = ar.on_request_body(ep.HttpBody(body=orjson.dumps(body), end_of_stream=True))
    common = resp.request_body.response
    sent = common.body_mutation.body
    assert header_sets(common.header_mutation)["content-length"] == str(len(sent))
    return dict(orjson.loads(sent))


def test_attempt_stage_transforms_every_attempt_the_same_way() -> None:
    ir, _ = _parse(
        {
            "modelAliases": {"fast": "gpt-4o-mini"},
            "overrides": [{"field": "n", "value": 1}],
            "prompt": {"prepend": [{"role": "system", "content": "S"}]},
        }
    )
    config = make_config(transforms=_transforms(ir))
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    first = _attempt(config, dict(body), CLIENT_HEADERS)
    assert first == _attempt(config, dict(body), CLIENT_HEADERS)  # a retry starts from the same client body
    assert first == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
        "n": 1,
    }


def test_attempt_stage_uses_the_model_the_router_routed_on() -> None:
    ir, _ = _parse({"defaults": [{"field": "n", "value": 1}]})
    config = make_config(transforms=_transforms(ir))
    sent = _attempt(config, {"model": "fast", "messages": []}, {**CLIENT_HEADERS, MODEL_HEADER: "gpt-4o"})
    assert sent == {"model": "gpt-4o", "messages": [], "n": 1}


def test_the_context_holds_only_the_request_fields_expressions_read() -> None:
    method = cel.compile_expression("request.method == 'POST' ? llmRequest.model : 'x'")
    assert method.request_fields == frozenset({"method"}) and method.reads_request
    whole = cel.compile_expression("request['method']")
    assert whole.request_fields is None
    view = transforms.request_view({":method": "POST", "x-a": "b"})
    ctx = cel.context(body={"model": "m"}, request=view, request_fields=cel.request_fields([method]))
    assert cel.evaluate(method, ctx) == (True, "m")
    assert cel.request_fields([method, whole]) is None


def test_token_counting_counts_the_enriched_prompt() -> None:
    plan = _plan({"prompt": {"prepend": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}})
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert transforms.apply_request(body, plan, op="count_tokens", client_api="anthropic")
    assert body == {
        "model": "m",
        "system": "S",
        "messages": [{"role": "user", "content": "U"}, {"role": "user", "content": "hi"}],
    }
