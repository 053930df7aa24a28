"""JWT authentication (`traffic.jwtAuthentication`) through the real gateway: Envoy's jwt_authn validates,
the router stage maps the claims to the caller, with the official OpenAI and Anthropic SDKs as clients.

Routes: `/inline` (Strict; an RSA issuer with an inline JWKS, audience `llm-gateway`), `/remote`
(Strict; an EC issuer whose JWKS a local HTTP server serves), `/optional` (Optional, the inline
issuer), and `/routed` (model routing: the rule for `jwt-model` needs the inline issuer's token,
the other rule nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.jwks import Issuer, JwksServer
from tests.harness import GatewayProcess, ai_backend_yaml, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration
PROVIDER_KEY = "sk-provider-secret-stays-home"
AUDIENCE = "llm-gateway"

ROUTED = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: routed, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - name: jwt-only
      matches:
        - path: {type: PathPrefix, value: /routed}
          headers: [{name: x-gateway-model-name, value: jwt-model}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: openai}]
    - name: anyone
      matches: [{path: {type: PathPrefix, value: /routed}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: openai}]
"""


def policy(name: str, target: dict[str, str], mode: str, jwks: dict[str, object], issuer: str) -> str:
    doc = {
        "apiVersion": "agentgateway.dev/v1alpha1",
        "kind": "AgentgatewayPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", **target}],
            "traffic": {
                "jwtAuthentication": {
                    "mode": mode,
                    "providers": [{"issuer": issuer, "audiences": [AUDIENCE], "jwks": jwks}],
                }
            },
        },
    }
    return "---\n" + json.dumps(doc) + "\n"


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayProcess, FakeProviderThread, Issuer, Issuer]]:
    fp = FakeProviderThread(name="jwt").start()
    rsa_issuer = Issuer("https://idp.example.com", kid="rsa-1")
    ec_issuer = Issuer("https://other-idp.example.com", kid="ec-1", algorithm="ES256")
    jwks = JwksServer(ec_issuer).start()
    gw = GatewayProcess(workers=2)
    inline = {"inline": rsa_issuer.jwks_json()}
    remote = {"remote": {"url": jwks.url}}
    route = {"kind": "HTTPRoute", "name": "r"}
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + http_route_yaml(route_rule("/inline", "openai", rewrite=True), route_rule("/claude", "claude", rewrite=True))
        + http_route_yaml(route_rule("/remote", "openai", rewrite=True), name="remote")
        + http_route_yaml(route_rule("/optional", "openai", rewrite=True), name="optional")
        + ROUTED
        + ai_backend_yaml("openai", "openai: {}", port=fp.port, key=PROVIDER_KEY)
        + ai_backend_yaml("claude", "anthropic: {}", port=fp.port, key=PROVIDER_KEY)
        + policy("inline", route, "Strict", inline, rsa_issuer.issuer)
        + policy("remote", {**route, "name": "remote"}, "Strict", remote, ec_issuer.issuer)
        + policy("optional", {**route, "name": "optional"}, "Optional", inline, rsa_issuer.issuer)
        + policy("routed", {**route, "name": "routed", "sectionName": "jwt-only"}, "Strict", inline, rsa_issuer.issuer),
    )
    gw.start()
    yield gw, fp, rsa_issuer, ec_issuer
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()
    jwks.stop()


def chat(gw: GatewayProcess, prefix: str, token: str | None, model: str = "gpt-4o-mini") -> str:
    no_key = {} if token else {"Authorization": openai.Omit()}
    client = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key=token or "unused", max_retries=0, timeout=20)
    out = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers=no_key
    )
    return out.choices[0].message.content or ""


Setup = tuple[GatewayProcess, FakeProviderThread, Issuer, Issuer]


def test_valid_tokens_pass_and_the_provider_gets_only_the_gateway_credential(setup: Setup) -> None:
    gw, fp, rsa_issuer, ec_issuer = setup
    fp.clear()
    rsa_token = rsa_issuer.token(sub="alice", aud=AUDIENCE, team="search", tenant="acme")
    assert chat(gw, "/inline", rsa_token)
    assert chat(gw, "/remote", ec_issuer.token(sub="bob", aud=AUDIENCE))  # JWKS fetched from the local IdP
    seen = fp.requests
    assert [r.headers["authorization"] for r in seen] == [f"Bearer {PROVIDER_KEY}"] * 2
    assert all(rsa_token not in json.dumps(r.headers) for r in seen)
    log = wait_until(lambda: gw.log() if '"user":"alice"' in gw.log() else None, "alice in the access log")
    assert '"key_id":"https://idp.example.com/alice"' in log and '"tenant":"acme"' in log
    assert rsa_token not in log


@pytest.mark.parametrize(
    ("what", "status"),
    [("none", 401), ("expired", 401), ("wrong audience", 403), ("other issuer", 401), ("garbage", 401)],
)
def test_bad_tokens_are_refused_in_the_openai_schema(setup: Setup, what: str, status: int) -> None:
    gw, fp, rsa_issuer, ec_issuer = setup
    fp.clear()
    token = {
        "none": None,
        "expired": rsa_issuer.token(sub="alice", aud=AUDIENCE, expires_in=-120),
        "wrong audience": rsa_issuer.token(sub="alice", aud="someone-else"),
        "other issuer": ec_issuer.token(sub="alice", aud=AUDIENCE),
        "garbage": "not.a.jwt",
    }[what]
    with pytest.raises(openai.APIStatusError) as err:
        chat(gw, "/inline", token)
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_token", body
    assert fp.requests == []


def test_anthropic_client_gets_its_schema(setup: Setup) -> None:
    gw, fp, rsa_issuer, _ = setup
    fp.clear()
    expired = rsa_issuer.token(sub="alice", aud=AUDIENCE, expires_in=-120)
    client = anthropic.Anthropic(
        base_url=f"{gw.url}/claude", api_key="x", default_headers={"authorization": f"Bearer {expired}"}, max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError) as err:
        client.messages.create(model="claude-3-5-haiku", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    good = rsa_issuer.token(sub="carol", aud=AUDIENCE)
    client = anthropic.Anthropic(
        base_url=f"{gw.url}/claude", api_key="x", default_headers={"authorization": f"Bearer {good}"}, max_retries=0
    )
    assert client.messages.create(
        model="claude-3-5-haiku", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    ).content
    assert [r.headers["x-api-key"] for r in fp.requests] == [PROVIDER_KEY]


def test_optional_mode_lets_requests_without_a_token_through(setup: Setup) -> None:
    gw, _, rsa_issuer, _ = setup
    assert chat(gw, "/optional", None)
    assert chat(gw, "/optional", rsa_issuer.token(sub="alice", aud=AUDIENCE))
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "/optional", rsa_issuer.token(sub="alice", aud=AUDIENCE, expires_in=-120))


def test_model_routing_to_a_jwt_rule_needs_the_token(setup: Setup) -> None:
    gw, fp, rsa_issuer, _ = setup
    fp.clear()
    assert chat(gw, "/routed", None)  # the `anyone` rule
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "/routed", None, model="jwt-model")
    assert chat(gw, "/routed", rsa_issuer.token(sub="alice", aud=AUDIENCE), model="jwt-model")
    assert len(fp.requests) == 2
    resp = httpx.post(
        f"{gw.url}/routed/v1/chat/completions",
        headers={"authorization": "Bearer not.a.jwt"},
        json={"model": "jwt-model", "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert resp.status_code == 401
