"""API key authentication (AgentgatewayPolicy / AIPolicy `traffic.apiKeyAuthentication`) through the real
gateway, with the official OpenAI and Anthropic SDKs as clients and the fake provider recording what
reached it.

Routes: `/openai` and `/claude` (Strict, a Gateway-level AgentgatewayPolicy with the Secret
`team-keys`), `/open` (Optional, an HTTPRoute-level AIPolicy), and `/routed` (model routing: the
rule for model `vip-model` needs a key from `vip-keys` as well, a rule-level policy; the request is
authenticated on the headers, before the model is known, so Envoy's guard route answers for it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, ai_backend_yaml, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration
PROVIDER_KEY = "sk-provider-secret-stays-home"
ALICE = "sk-alice-0123456789"
BOB = "sk-bob-9876543210"
VIP = "sk-vip-5555555555"
ROTATED = "sk-alice-rotated-42"

ROUTED = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: routed, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - name: vip
      matches:
        - path: {type: PathPrefix, value: /routed}
          headers: [{name: x-gateway-model-name, value: vip-model}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: openai}]
    - name: everyone
      matches: [{path: {type: PathPrefix, value: /routed}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: openai}]
"""

POLICIES = """---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: team-keys}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  traffic:
    apiKeyAuthentication: {mode: Strict, secretRef: {name: team-keys}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIPolicy
metadata: {name: open}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: open}]
  traffic:
    apiKeyAuthentication: {mode: Optional, secretRef: {name: team-keys}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIPolicy
metadata: {name: vip}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: routed, sectionName: vip}]
  traffic:
    apiKeyAuthentication: {secretRef: {name: vip-keys}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIPolicy
metadata: {name: identity-export}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  traffic:
    callerIdentity:
      upstreamHeaders: {user: x-llmgw-user, team: x-llmgw-team}
      metricLabels: [team]
---
apiVersion: v1
kind: Secret
metadata: {name: vip-keys}
stringData:
  vip: '{"key": "sk-vip-5555555555", "metadata": {"user": "victor", "team": "vip"}}'
"""


def team_keys(*entries: tuple[str, str]) -> str:
    lines = "".join(f"  {name}: '{value}'\n" for name, value in entries)
    return f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: team-keys}}\nstringData:\n{lines}"


ALICE_ENTRY = ("alice", json.dumps({"key": ALICE, "metadata": {"user": "alice", "team": "search", "tenant": "acme"}}))
BOB_ENTRY = ("bob", BOB)
VIP_ENTRY = ("victor", VIP)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayProcess, FakeProviderThread]]:
    fp = FakeProviderThread(name="apikeys").start()
    gw = GatewayProcess(workers=2)
    routes = http_route_yaml(
        route_rule("/openai", "openai", rewrite=True), route_rule("/claude", "claude", rewrite=True)
    )
    gw.write(
        "gw.yaml",
        gateway_yaml(port=gw.port)
        + routes
        + http_route_yaml(route_rule("/open", "openai", rewrite=True), name="open")
        + ROUTED
        + ai_backend_yaml("openai", "openai: {}", port=fp.port, key=PROVIDER_KEY)
        + ai_backend_yaml("claude", "anthropic: {}", port=fp.port, key=PROVIDER_KEY)
        + POLICIES,
    )
    gw.write("keys.yaml", team_keys(ALICE_ENTRY, BOB_ENTRY, VIP_ENTRY))
    gw.start()
    yield gw, fp
    assert gw.stop() == 0
    gw.cleanup()
    fp.stop()


def chat(gw: GatewayProcess, prefix: str, key: str | None, model: str = "gpt-4o-mini") -> str:
    # No key: the SDK insists on one, so it is told to leave the header out.
    no_key = {} if key else {"Authorization": openai.Omit()}
    client = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key=key or "unused", max_retries=0, timeout=20)
    out = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers=no_key
    )
    return out.choices[0].message.content or ""


def test_openai_client_without_or_with_a_wrong_key_gets_401_and_nothing_is_sent(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, fp = setup
    fp.clear()
    for key in (None, "sk-not-a-key"):
        with pytest.raises(openai.AuthenticationError) as err:
            chat(gw, "/openai", key)
        body = err.value.body
        assert isinstance(body, dict) and body["code"] == "invalid_api_key" and body["type"] == "authentication_error"
    resp = httpx.post(f"{gw.url}/openai/v1/chat/completions", json={"model": "m", "messages": []}, timeout=10)
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"message", "type", "code", "param"}
    assert fp.requests == []


def test_anthropic_client_with_a_wrong_key_gets_401_in_its_schema(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, fp = setup
    fp.clear()
    client = anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key="sk-ant-wrong", max_retries=0, timeout=20)
    with pytest.raises(anthropic.AuthenticationError) as err:
        client.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key."}}
    assert fp.requests == []


def test_valid_keys_pass_and_the_provider_gets_only_the_gateway_credential(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, fp = setup
    fp.clear()
    assert chat(gw, "/openai", ALICE)
    client = anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key=BOB, max_retries=0, timeout=20)
    msg = client.messages.create(model="claude-3-5-haiku", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert msg.content
    # Azure's SDKs send the key as `api-key`.
    resp = httpx.post(
        f"{gw.url}/openai/v1/chat/completions",
        headers={"api-key": BOB},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    seen = fp.requests
    assert len(seen) == 3
    assert seen[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert seen[1].headers["x-api-key"] == PROVIDER_KEY
    for rec in seen:
        text = json.dumps(rec.headers)
        assert ALICE not in text and BOB not in text
        assert "x-llmgw-authn" not in rec.headers
        assert "api-key" not in rec.headers
    # The access log names the caller, never the key; Envoy's config holds no key.
    log = wait_until(lambda: gw.log() if '"user":"alice"' in gw.log() else None, "alice in the access log")
    assert '"key_id":"default/team-keys/alice"' in log and '"team":"search"' in log
    assert ALICE not in log and BOB not in log
    dump = gw.config_dump()
    assert ALICE not in dump and BOB not in dump


def test_identity_goes_upstream_and_to_allowlisted_metric_labels_only(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    """Route `r` has `callerIdentity` (field by field beside the Gateway's apiKeyAuthentication)."""
    gw, fp = setup
    fp.clear()
    spoof = {"x-llmgw-user": "mallory", "x-llmgw-team": "admins"}
    for key in (ALICE, BOB):
        resp = httpx.post(
            f"{gw.url}/openai/v1/chat/completions",
            headers={"authorization": f"Bearer {key}", **spoof},
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
    alice, bob = fp.requests
    assert (alice.headers["x-llmgw-user"], alice.headers["x-llmgw-team"]) == ("alice", "search")
    assert "x-llmgw-user" not in bob.headers and "x-llmgw-team" not in bob.headers  # bob's key has no metadata
    metrics = wait_until(lambda: gw.metrics() if 'caller_team="search"' in gw.metrics() else None, "team label")
    assert 'caller_user="alice"' not in metrics and "mallory" not in metrics


def test_optional_mode_lets_anonymous_callers_through_but_not_wrong_keys(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, fp = setup
    fp.clear()
    assert chat(gw, "/open", None)
    assert chat(gw, "/open", ALICE)
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "/open", "sk-wrong")
    assert len(fp.requests) == 2


def test_model_routing_to_a_stricter_rule_needs_its_key(setup: tuple[GatewayProcess, FakeProviderThread]) -> None:
    """The rule for `vip-model` is chosen after the body; the guard route holds it to its own policy."""
    gw, fp = setup
    fp.clear()
    assert chat(gw, "/routed", ALICE, model="gpt-4o-mini")  # the `everyone` rule: team keys
    with pytest.raises(openai.AuthenticationError) as err:
        chat(gw, "/routed", ALICE, model="vip-model")
    assert "not authenticated for this route" in str(err.value)
    assert chat(gw, "/routed", VIP, model="vip-model")
    anthropic_path = httpx.post(
        f"{gw.url}/routed/v1/messages",
        headers={"x-api-key": ALICE},
        json={"model": "vip-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert anthropic_path.status_code == 401
    assert anthropic_path.json()["type"] == "error"
    assert len(fp.requests) == 2


def test_revocation_and_rotation_reach_new_requests_without_a_restart(
    setup: tuple[GatewayProcess, FakeProviderThread],
) -> None:
    gw, _ = setup
    pids = gw.child_pids()
    gw.write("keys.yaml", team_keys(("alice", ROTATED), BOB_ENTRY, VIP_ENTRY))

    def rotated() -> bool:
        try:
            return bool(chat(gw, "/openai", ROTATED))
        except openai.AuthenticationError:
            return False

    wait_until(rotated, "the rotated key to be accepted")
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "/openai", ALICE)  # the old key is revoked
    assert gw.child_pids() == pids
    gw.write("keys.yaml", team_keys(ALICE_ENTRY, BOB_ENTRY, VIP_ENTRY))
    wait_until(lambda: not _refused(gw, ALICE), "the original key to be back")


def _refused(gw: GatewayProcess, key: str) -> bool:
    try:
        chat(gw, "/openai", key)
    except openai.AuthenticationError:
        return True
    return False
