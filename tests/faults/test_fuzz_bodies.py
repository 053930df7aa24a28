"""Fuzzed and malformed request bodies through the real gateway: a 4xx in the client's schema, never a 5xx.

A few hundred seeded bodies (the same every run; see tests/fuzzing.py) go to
four route kinds of one gateway, against the fake provider:

- OpenAI direct: `/v1/chat/completions` -> an OpenAI-compatible backend (same
  schema, router stage only);
- OpenAI -> Anthropic: `/ant/chat/completions` -> an Anthropic backend
  (translated in the attempt stage);
- `/messages`: an Anthropic client on `/v1/messages` -> the OpenAI-compatible
  backend (translated in the router stage, a direct route);
- Anthropic passthrough: `/ant/v1/messages` -> the Anthropic backend.

Every response must be below 500, every 4xx body must parse in the client's
error schema, and the gateway log must hold no traceback. Bodies a provider
accepts may get a 2xx (the fake answers them); what matters is that nothing the
client sends makes the gateway fail.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from fakeprovider import FakeProviderThread
from tests.fuzzing import ANTHROPIC, MODELS, OPENAI_CHAT, dumps, mutated, raw_cases
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = [pytest.mark.integration, pytest.mark.faults]
SEED = 20_260_101
PER_ROUTE = 80  # mutated JSON bodies per route kind, plus the raw-byte cases


@dataclass(frozen=True)
class RouteKind:
    name: str
    path: str
    anthropic_client: bool
    seed: dict[str, Any]


ROUTES = (
    RouteKind("openai-direct", "/v1/chat/completions", False, OPENAI_CHAT),
    RouteKind("openai-to-anthropic", "/ant/chat/completions", False, OPENAI_CHAT),
    RouteKind("messages-to-openai", "/v1/messages", True, ANTHROPIC),
    RouteKind("anthropic-passthrough", "/ant/v1/messages", True, ANTHROPIC),
)


def manifests(*, port: int, upstream_port: int) -> str:
    routes = http_route_yaml(route_rule("/ant", "claude"), route_rule("/v1", "oai"), name="fuzz")
    return (
        gateway_yaml(port=port)
        + routes
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: oai, namespace: default}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {upstream_port}}}}}
  policies: {{auth: {{key: sk-oai}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: claude, namespace: default}}
spec:
  ai: {{provider: {{anthropic: {{}}, host: 127.0.0.1, port: {upstream_port}}}}}
  policies: {{auth: {{key: sk-ant}}}}
"""
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake", record_limit=16).start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    gw.write("gw.yaml", manifests(port=gw.port, upstream_port=provider.port))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def bodies(route: RouteKind, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(PER_ROUTE):
        body = mutated(route.seed, rng)
        if rng.random() < 0.15:
            body["model"] = rng.choice(MODELS)
        if rng.random() < 0.2:
            body["stream"] = rng.choice([True, "yes", 1, None])
        out.append(dumps(body))
    return out + raw_cases(orjson.dumps(route.seed))


def schema_problem(resp: httpx.Response, *, anthropic: bool) -> str | None:
    """Why a 4xx body is not an error in the client's schema (None: it is)."""
    try:
        doc = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "not JSON"
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not isinstance(err.get("type"), str):
        return "no error object with message and type"
    if anthropic and doc.get("type") != "error":
        return "not Anthropic's schema"
    if not anthropic and set(doc) != {"error"}:
        return "not OpenAI's schema"
    return None


def test_fuzzed_bodies_never_get_a_5xx(gateway: GatewayProcess) -> None:
    rng = random.Random(SEED)
    failures: list[str] = []
    counts: dict[str, dict[int, int]] = {}
    with httpx.Client(base_url=gateway.url, timeout=20) as client:
        for route in ROUTES:
            seen = counts.setdefault(route.name, {})
            for body in bodies(route, rng):
                headers = {"content-type": "application/json"}
                if route.anthropic_client:
                    headers["anthropic-version"] = "2023-06-01"  # as the anthropic SDK sends it
                resp = client.post(route.path, content=body, headers=headers)
                seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
                sample = f"{route.name} {resp.status_code} {body[:120]!r} -> {resp.text[:200]!r}"
                if resp.status_code >= 500:
                    failures.append(sample)
                elif resp.status_code >= 400:
                    problem = schema_problem(resp, anthropic=route.anthropic_client)
                    if problem is not None:
                        failures.append(f"{problem}: {sample}")
    log = gateway.log()
    assert not failures, f"{len(failures)} bad answers ({counts}):\n" + "\n".join(failures[:20])
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    for route in ROUTES:  # the fuzz reaches both outcomes on every route kind
        assert any(s < 300 for s in counts[route.name]) and any(400 <= s < 500 for s in counts[route.name]), counts


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
NESTED = b'"x": ' + b"[" * 300 + b"]" * 300
PART_NESTED = b'{"type": "custom", "x": ' + b"[" * 300 + b"]" * 300 + b"}"  # an unknown part: kept, re-encoded
CHAT_PART_NESTED = b'{"model": "m", "messages": [{"role": "user", "content": [' + PART_NESTED + b"]}]}"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/ant/chat/completions", {**CHAT, "model": "a\r\nb"}, "model"),
        ("/ant/chat/completions", {**CHAT, "model": "a\x00b"}, "model"),
        ("/ant/chat/completions", {**CHAT, "model": "a\x7fb"}, "model"),
        ("/ant/chat/completions", {**CHAT, "model": "m" * 61_000}, "model"),
        ("/v1/chat/completions", {**CHAT, "model": "a\nb"}, "model"),
        ("/v1/messages", {**MESSAGES, "model": "a\nb"}, "model"),
        ("/ant/chat/completions", {**CHAT, "tools": 1}, "tools"),
        ("/ant/chat/completions", {**CHAT, "messages": 5}, "messages"),
        ("/ant/chat/completions", {**CHAT, "messages": [1]}, "messages[0]"),
        ("/ant/chat/completions", {**CHAT, "messages": [{"role": "user", "content": {}}]}, "messages[0].content"),
        ("/ant/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ("/ant/chat/completions", {**CHAT, "max_tokens": "abc"}, "max_tokens"),
        ("/ant/chat/completions", {**CHAT, "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream"),
        ("/v1/messages", {**MESSAGES, "stream": "yes"}, "stream"),
        ("/v1/messages", {**MESSAGES, "max_tokens": "abc"}, "max_tokens"),
        ("/v1/messages", {**MESSAGES, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ("/v1/messages", {**MESSAGES, "messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]"),
        ("/v1/messages", dumps(MESSAGES)[:-1] + b", " + NESTED + b"}", None),
        ("/ant/chat/completions", CHAT_PART_NESTED, None),
    ],
)
def test_issue_cases_are_400_in_the_client_schema(
    gateway: GatewayProcess, path: str, body: dict[str, Any] | bytes, param: str | None
) -> None:
    """The inputs of the reliability issue, each of which was a 500 or a 503 "retry shortly"."""
    anthropic = path.endswith("/messages")
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    content = body if isinstance(body, bytes) else dumps(body)
    resp = httpx.post(gateway.url + path, content=content, headers=headers, timeout=20)
    assert resp.status_code == 400, resp.text[:300]
    assert schema_problem(resp, anthropic=anthropic) is None, resp.text[:300]
    message = resp.json()["error"]["message"]
    assert (f"`{param}`" if param else "nested too deeply") in message
    if param and not anthropic and not path.startswith("/ant"):
        assert resp.json()["error"]["param"] == param
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("path", ["/ant/chat/completions", "/v1/chat/completions"])
def test_non_ascii_model_still_routes(gateway: GatewayProcess, path: str) -> None:
    resp = httpx.post(gateway.url + path, content=dumps({**CHAT, "model": "é模型"}), timeout=20)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["model"] == "é模型"
