"""policies.ai request transforms through the real gateway, with the official SDKs.

One gateway, one fake provider (it speaks OpenAI, Anthropic and Bedrock by path and
records what it received). A model alias written on one backend routes like its target:
the HTTPRoute matches `x-gateway-model-name: gpt-4o-mini`, the client asks for `fast`.
That backend also has defaults, overrides, prompt enrichment and a CEL transformation;
two more backends add prompt caching markers for Anthropic and Bedrock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from fakeprovider import bedrock_wire as bw
from tests.harness import GatewayProcess, free_port, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration

CLAUDE_BEDROCK = "anthropic.claude-3-5-haiku-20241022-v1:0"
LONG_SYSTEM = "You are a careful assistant who answers every question about the weather. " * 3

ROUTES = http_route_yaml(
    """    - matches:
        - path: {type: PathPrefix, value: /v1}
          headers: [{name: x-gateway-model-name, value: gpt-4o-mini}]
      backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: aliased}]
""",
    route_rule("/v1", "plain"),
    route_rule("/claude", "claude", rewrite=True),
    route_rule("/bedrock", "bedrock", rewrite=True),
    name="transforms",
)
BACKENDS = """---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: aliased, namespace: default}}
spec:
  ai:
    provider:
      openai: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth: {{key: key-aliased}}
    ai:
      modelAliases: {{fast: gpt-4o-mini, "mini-*": gpt-4o-mini, big: gpt-4o}}
      defaults:
      - {{field: temperature, value: 0.3}}
      overrides:
      - {{field: max_tokens, value: 77}}
      transformations:
      - {{field: user, expression: "'team-' + request.headers['x-team']"}}
      prompt:
        prepend: [{{role: SYSTEM, content: Answer in French.}}]
        append: [{{role: USER, content: Be brief.}}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: plain, namespace: default}}
spec:
  ai:
    provider:
      openai: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth: {{key: key-plain}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: claude, namespace: default}}
spec:
  ai:
    provider:
      anthropic: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth: {{key: key-claude}}
    ai:
      promptCaching: {{minTokens: 20, cacheTools: true}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: bedrock, namespace: default}}
spec:
  ai:
    provider:
      bedrock: {{region: us-west-2}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth:
      aws: {{secretRef: {{name: aws-keys}}}}
    ai:
      promptCaching: {{minTokens: 20}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-keys, namespace: default}}
stringData: {{accessKey: {access}, secretKey: {secret}}}
"""
DIRECT_PORT = free_port()
LLMGW_CLASS = gateway_yaml(port=0).split("---")[0]  # the GatewayClass, written once
CACHED = {"type": "ephemeral"}
CACHE_POINT = {"cachePoint": {"type": "default"}}


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    manifests = BACKENDS.format(upstream=provider.port, access=bw.TEST_ACCESS_KEY, secret=bw.TEST_SECRET_KEY)
    # A second Gateway whose only route has one provider: a direct route, where the router
    # stage does the provider work (and so the transforms) itself.
    direct = gateway_yaml(port=DIRECT_PORT, name="gw2") + http_route_yaml(
        route_rule("/v1", "aliased", kind="AgentgatewayBackend"), name="direct", gateway="gw2"
    )
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + ROUTES + manifests + direct.replace(LLMGW_CLASS, ""))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture(autouse=True)
def _fresh(provider: FakeProviderThread) -> None:
    provider.clear()
    provider.reset_behaviour()


def _openai(gateway: GatewayProcess, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + prefix, api_key="sk-client", max_retries=0)


def _chat(gateway: GatewayProcess, **kw: Any) -> Any:
    return _openai(gateway).chat.completions.create(
        messages=[{"role": "user", "content": "Bonjour"}], extra_headers={"x-team": "blue"}, **kw
    )


def test_alias_routes_like_its_target_and_every_transform_applies(
    gateway: GatewayProcess, provider: FakeProviderThread
) -> None:
    resp = _chat(gateway, model="fast", max_tokens=500)
    assert resp.choices[0].message.content
    [rec] = provider.requests
    assert rec.headers["authorization"] == "Bearer key-aliased"  # the route of the alias's target
    assert rec.json == {
        "model": "gpt-4o-mini",  # the alias resolved
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Bonjour"},
            {"role": "user", "content": "Be brief."},
        ],
        "max_tokens": 77,  # override: always
        "temperature": 0.3,  # default: absent in the request
        "user": "team-blue",  # CEL on the request headers
    }


def test_defaults_leave_a_value_the_client_sent(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    _chat(gateway, model="mini-latest", temperature=0.9)  # a wildcard alias
    [rec] = provider.requests
    assert rec.json["model"] == "gpt-4o-mini" and rec.json["temperature"] == 0.9 and rec.json["max_tokens"] == 77


def test_direct_route_applies_the_same_transforms(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{DIRECT_PORT}/v1", api_key="sk", max_retries=0)
    client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Bonjour"}], extra_headers={"x-team": "red"}
    )
    assert "httproute/default/direct/rule/0/match/0/direct" in gateway.admin("/config_dump").text
    [rec] = provider.requests
    assert rec.headers["authorization"] == "Bearer key-aliased"
    assert rec.json["model"] == "gpt-4o-mini" and rec.json["user"] == "team-red" and rec.json["max_tokens"] == 77
    assert [m["content"] for m in rec.json["messages"]] == ["Answer in French.", "Bonjour", "Be brief."]


def test_a_model_no_alias_names_is_untouched(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    _chat(gateway, model="gpt-4o", temperature=0.1)
    [rec] = provider.requests
    assert rec.headers["authorization"] == "Bearer key-plain"
    assert rec.json == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Bonjour"}], "temperature": 0.1}


def test_an_alias_whose_target_routes_elsewhere_reaches_that_backend_as_the_target(
    gateway: GatewayProcess, provider: FakeProviderThread
) -> None:
    _chat(gateway, model="big")  # `aliased` defines it; gpt-4o's route goes to `plain`, which has no policies
    [rec] = provider.requests
    assert rec.headers["authorization"] == "Bearer key-plain"
    assert rec.json == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Bonjour"}]}


def test_models_lists_exact_aliases(gateway: GatewayProcess) -> None:
    ids = {m.id for m in _openai(gateway).models.list()}
    assert {"fast", "big"} <= ids and "mini-*" not in ids


def test_anthropic_client_gets_cache_control(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    client = anthropic.Anthropic(base_url=gateway.url + "/claude", api_key="sk-client", max_retries=0)
    msg = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        system=LONG_SYSTEM,
        tools=[
            {"name": "weather", "description": "Current weather for one city. " * 4, "input_schema": {"type": "object"}}
        ],
        messages=[
            {"role": "user", "content": "What is the weather like in Paris today?"},
            {"role": "assistant", "content": "It is sunny."},
            {"role": "user", "content": "And tomorrow?"},
        ],
    )
    assert msg.content
    [rec] = provider.requests
    assert rec.path == "/v1/messages"
    body = rec.json
    assert body["system"] == [{"type": "text", "text": LONG_SYSTEM, "cache_control": CACHED}]
    assert body["tools"][0]["cache_control"] == CACHED
    assert body["messages"][1]["content"] == [{"type": "text", "text": "It is sunny.", "cache_control": CACHED}]
    assert body["messages"][2]["content"] == "And tomorrow?"


def test_openai_client_to_anthropic_gets_cache_control(gateway: GatewayProcess, provider: FakeProviderThread) -> None:
    _openai(gateway, "/claude/v1").chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "system", "content": LONG_SYSTEM},
            {"role": "user", "content": "What is the weather like in Paris today?"},
            {"role": "assistant", "content": "It is sunny."},
            {"role": "user", "content": "And tomorrow?"},
        ],
    )
    [rec] = provider.requests
    assert rec.json["system"] == [{"type": "text", "text": LONG_SYSTEM, "cache_control": CACHED}]
    assert rec.json["messages"][1]["content"][-1]["cache_control"] == CACHED


def test_bedrock_gets_cache_points_and_a_short_prompt_none(
    gateway: GatewayProcess, provider: FakeProviderThread
) -> None:
    messages: Any = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "What is the weather like in Paris today?"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    _openai(gateway, "/bedrock/v1").chat.completions.create(model=CLAUDE_BEDROCK, messages=messages)
    [rec] = provider.requests
    assert rec.path.endswith("/converse")  # the fake checked the SigV4 signature over these bytes
    assert rec.json["system"] == [{"text": LONG_SYSTEM}, CACHE_POINT]
    assert rec.json["messages"][1]["content"] == [{"text": "It is sunny."}, CACHE_POINT]
    assert rec.json["messages"][2]["content"] == [{"text": "And tomorrow?"}]
    provider.clear()
    _openai(gateway, "/bedrock/v1").chat.completions.create(
        model=CLAUDE_BEDROCK, messages=[{"role": "system", "content": "Short."}, *messages[1:]]
    )
    [rec] = provider.requests
    assert CACHE_POINT not in rec.json["system"] and all(CACHE_POINT not in m["content"] for m in rec.json["messages"])


def test_bad_transform_config_is_reported_by_validate(tmp_path: Any) -> None:
    import subprocess
    import sys

    (tmp_path / "b.yaml").write_text(
        """apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: x, namespace: default}
spec:
  ai: {provider: {openai: {}}}
  policies:
    auth: {key: k}
    ai:
      transformations: [{field: user, expression: "jwt.sub"}]
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", "-f", str(tmp_path / "b.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "spec.policies.ai.transformations[0].expression: reads jwt" in result.stderr


def test_gateway_stays_up_for_plain_http(gateway: GatewayProcess) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "fast", "messages": "nope"}, timeout=10)
    assert r.status_code == 400 and "error" in r.json()
