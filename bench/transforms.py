"""Micro-benchmark: what `policies.ai` request transforms cost per request, and the two CEL libraries.

    PYTHONPATH=. python bench/transforms.py

Measures, in-process (no Envoy, no gRPC: the work the attempt stage adds to a request
it already parsed), on a ~2 KB chat body and on a ~36 KB one:

- each step on its own (alias, defaults+overrides, one CEL transformation, prompt
  enrichment, Anthropic and Bedrock cache markers), then all of them together;
- CEL: `common-expression-language` (Rust `cel`, the one llmgw uses) against
  `cel-python` (pure Python), compile once and evaluate per request.

Each figure is the median of 7 runs of N iterations, in microseconds per request.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from extproc.contract import PromptCachingConfig, TransformsConfig
from extproc.policies import cel, transforms

HEADERS = {":method": "POST", ":path": "/v1/chat/completions", "x-team": "blue", "user-agent": "openai-python"}


def body(turns: int) -> dict[str, Any]:
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 20}]
    for i in range(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "words " * 150})
    return {"model": "fast", "max_tokens": 999, "temperature": 0.2, "messages": messages}


def timed(fn: Callable[[], object], n: int) -> float:
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def per_request(plan: transforms.Plan, template: dict[str, Any], *, provider_api: str, n: int) -> float:
    """apply_request + finalize on a fresh copy, minus the cost of the copy itself."""
    raw = orjson.dumps(template)
    view = transforms.request_view(HEADERS)

    def run() -> None:
        b = orjson.loads(raw)
        transforms.apply_request(b, plan, op="chat_completions", client_api="openai", request=view)
        transforms.finalize(b, plan, provider_api=provider_api, request=view)

    return timed(run, n) - timed(lambda: orjson.loads(raw), n)


def marking(mark: Callable[..., bool], shape: dict[str, Any], caching: PromptCachingConfig, n: int) -> float:
    """One marking pass on a fresh copy, minus the cost of the copy."""
    return timed(lambda: mark(copy.deepcopy(shape), caching), n) - timed(lambda: copy.deepcopy(shape), n)


def converse_shape(template: dict[str, Any]) -> dict[str, Any]:
    msgs = template["messages"]
    return {
        "system": [{"text": msgs[0]["content"]}],
        "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in msgs[1:]],
    }


def main() -> None:
    caching = PromptCachingConfig(min_tokens=100, cache_tools=True)
    configs = {
        "alias only": TransformsConfig(aliases={"fast": "gpt-4o-mini", "claude-*": "claude-sonnet-4-5"}),
        "defaults + overrides (2 + 2)": TransformsConfig(
            defaults={"top_p": 0.9, "temperature": 0.5}, overrides={"user": "gw", "n": 1}
        ),
        "one CEL transformation (body)": TransformsConfig(
            transformations={"max_tokens": "llmRequest.max_tokens > 50 ? 50 : llmRequest.max_tokens"}
        ),
        "one CEL transformation (body + headers)": TransformsConfig(
            transformations={"user": "'team-' + request.headers['x-team']"}
        ),
        "prompt enrichment (1 + 1)": TransformsConfig(
            prepend=[{"role": "system", "content": "Answer in French."}],
            append=[{"role": "user", "content": "Be brief."}],
        ),
    }
    everything = TransformsConfig(
        aliases={"fast": "gpt-4o-mini"},
        defaults={"top_p": 0.9},
        overrides={"user": "gw"},
        transformations={"max_tokens": "llmRequest.max_tokens > 50 ? 50 : llmRequest.max_tokens"},
        prepend=[{"role": "system", "content": "Answer in French."}],
        prompt_caching=caching,
    )
    for label, turns, n in (("~2 KB body (2 turns)", 2, 2000), ("~36 KB body (40 turns)", 40, 200)):
        template = body(turns)
        print(f"\n{label}: {len(orjson.dumps(template))} bytes")
        for name, tc in configs.items():
            print(
                f"  {name:42s} {per_request(transforms.compile_plan(tc), template, provider_api='openai', n=n):7.1f} µs"
            )
        plan = transforms.compile_plan(everything)
        print(
            f"  {'all of the above + markers (anthropic)':42s} "
            f"{per_request(plan, template, provider_api='anthropic', n=n):7.1f} µs"
        )
        anthropic_body = {"system": template["messages"][0]["content"], "messages": template["messages"][1:]}
        name = "cache markers alone, Anthropic schema"
        print(f"  {name:42s} {marking(transforms.mark_anthropic, anthropic_body, caching, n):7.1f} µs")
        name = "cache markers alone, Converse schema"
        print(f"  {name:42s} {marking(transforms.mark_converse, converse_shape(template), caching, n):7.1f} µs")

    print("\nCEL, compiled once, evaluated per request (µs per evaluation; the context built per request):")
    cel_compare()


def cel_compare() -> None:
    import celpy

    expressions = {
        "ternary on a field": "llmRequest.max_tokens > 50 ? 50 : llmRequest.max_tokens",
        "header lookup": "request.headers['x-team'] == 'blue' ? 'gpt-4o-mini' : llmRequest.model",
        "string function": "llmRequest.model.startsWith('fa') ? 'gpt-4o' : llmRequest.model",
    }
    view = transforms.request_view(HEADERS)
    env = celpy.Environment()
    for label, turns in (("~2 KB", 2), ("~36 KB", 40)):
        b = body(turns)
        ctx = cel.context(body=b, request=view)
        build = timed(lambda b=b: cel.context(body=b, request=view), 200)
        py_act = {"llmRequest": celpy.json_to_cel(b), "request": celpy.json_to_cel(view)}
        py_build = timed(lambda b=b: celpy.json_to_cel(b), 100)
        print(f"  body {label}: context build: common-expression-language {build:.1f} µs, cel-python {py_build:.1f} µs")
        for name, source in expressions.items():
            rust = cel.compile_expression(source)
            prog = env.program(env.compile(source))
            r = timed(lambda rust=rust, ctx=ctx: cel.evaluate(rust, ctx), 2000)
            p = timed(lambda prog=prog, act=py_act: prog.evaluate(act), 200)
            print(f"    {name:22s} common-expression-language {r:6.2f} µs   cel-python {p:7.1f} µs")


if __name__ == "__main__":
    main()
