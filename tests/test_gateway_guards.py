"""Prompt guards end to end: the official SDKs through the real gateway, fakes recording what they got.

One gateway serves every case. Backends: `guarded-openai` (OpenAI provider, a direct route:
the router stage runs the request guards), `guarded-claude` (Anthropic provider: the attempt
stage runs them, before translation), webhook backends (up; down and failing open; down and
failing closed) and an OpenAI-moderated one. Asserted on both sides: what the client got
(status, error schema, masked text, no fragment of a card in any streamed chunk) and what the
provider and the guard services received (masked prompts, nothing at all after a rejection),
plus the decision metrics and access-log fields (and never the prompt text in either).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.guardrails import FakeGuardrails
from tests.gcp_fake import FakeTokenServer
from tests.harness import GatewayProcess, free_port, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration
KEY = "sk-provider-key"
CARD_TEXT = "Your card is 4111 1111 1111 1111, keep it safe."
MASKED_CARD_TEXT = "Your card is <CREDIT_CARD>, keep it safe."
CARD_FRAGMENTS = ("4111", "1111 1", "11 11")

REGEX_GUARDS = """
      promptGuard:
        streaming: Enabled
        request:
          - regex: {action: Reject, builtins: [Ssn]}
            response: {message: "No SSNs, please.", statusCode: 422}
          - regex: {builtins: [Email]}
        response:
          - regex: {builtins: [CreditCard]}
          - regex: {action: Reject, matches: ["TOP-SECRET-[0-9]+"]}
            response: {message: "That answer is classified."}
"""


def backend(name: str, kind: str, upstream: int, guards: str) -> str:
    return f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      {kind}: {{}}
      host: 127.0.0.1
      port: {upstream}
  policies:
    auth: {{key: {KEY}}}
    ai:{guards}"""


def webhook_guards(port: int, mode: str) -> str:
    hook = f"{{host: 127.0.0.1, port: {port}, failureMode: {mode}, timeout: 1s}}"
    return f"""
      promptGuard:
        streaming: Enabled
        request: [{{webhook: {hook}}}]
        response: [{{webhook: {hook}}}]
"""


def cloud_guards(port: int) -> str:
    at = f"host: 127.0.0.1, port: {port}"
    bedrock = f"bedrockGuardrails: {{identifier: gr-1, version: '2', region: eu-west-1, {at}, " + (
        "policies: {auth: {aws: {secretRef: {name: aws-keys}}}}}"
    )
    armor = f"googleModelArmor: {{templateId: t, projectId: p, {at}, " + (
        "policies: {auth: {gcp: {secretRef: {name: gcp-sa}}}}}"
    )
    azure = (
        f"azureContentSafety: {{endpoint: cs.cognitiveservices.azure.com, {at}, analyzeText: {{severityThreshold: 4}}, "
        "policies: {auth: {key: az-content-key}}}"
    )
    return f"""
      promptGuard:
        streaming: Enabled
        request: [{{{bedrock}}}, {{{armor}}}, {{{azure}}}]
        response: [{{{bedrock}}}, {{{armor}}}, {{{azure}}}]
"""


def secrets(credentials_json: str) -> str:
    encoded = base64.b64encode(credentials_json.encode()).decode()
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: aws-keys, namespace: default}}
stringData: {{accessKey: AKIAGUARDTEST, secretKey: guard-aws-secret}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gcp-sa, namespace: default}}
data:
  credentials.json: {encoded}
"""


def manifests(*, port: int, upstream: int, guards: int, dead: int, credentials_json: str = "{}") -> str:
    routes = http_route_yaml(
        route_rule("/v1", "guarded-openai"),
        route_rule("/claude", "guarded-claude", rewrite=True),
        route_rule("/a-hook", "hooked", rewrite=True),
        route_rule("/b-open", "hook-open", rewrite=True),
        route_rule("/c-down", "hook-down", rewrite=True),
        route_rule("/d-mod", "moderated", rewrite=True),
        route_rule("/e-cloud", "clouds", rewrite=True),
        route_rule("/f-hook", "hooked-claude", rewrite=True),
    )
    moderation = f"""
      promptGuard:
        request:
          - openAIModeration: {{policies: {{auth: {{key: sk-moderation-key}}}}, host: 127.0.0.1, port: {guards}}}
"""
    return (
        gateway_yaml(port=port)
        + routes
        + backend("guarded-openai", "openai", upstream, REGEX_GUARDS)
        + backend("guarded-claude", "anthropic", upstream, REGEX_GUARDS)
        + backend("hooked", "openai", upstream, webhook_guards(guards, "FailClosed"))
        + backend("hook-open", "openai", upstream, webhook_guards(dead, "FailOpen"))
        + backend("hook-down", "openai", upstream, webhook_guards(dead, "FailClosed"))
        + backend("moderated", "openai", upstream, moderation)
        + backend("clouds", "anthropic", upstream, cloud_guards(guards))
        + backend("hooked-claude", "anthropic", upstream, webhook_guards(guards, "FailClosed"))
        + secrets(credentials_json)
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def services() -> Iterator[FakeGuardrails]:
    fake = FakeGuardrails().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeTokenServer]:
    server = FakeTokenServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(provider: FakeProviderThread, services: FakeGuardrails, oauth: FakeTokenServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=2)
    sa = json.dumps(oauth.service_account())
    gw.write(
        "gw.yaml",
        manifests(port=gw.port, upstream=provider.port, guards=services.port, dead=free_port(), credentials_json=sa),
    )
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture
def fake(provider: FakeProviderThread, services: FakeGuardrails) -> Iterator[FakeProviderThread]:
    provider.clear()
    provider.reset_behaviour()
    services.clear()
    yield provider
    provider.reset_behaviour()


def oai(gw: GatewayProcess, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="client-key", max_retries=0)


def claude(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{gw.url}/claude", api_key="client-key", max_retries=0)


def ask(client: openai.OpenAI, text: str, **kw: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[call-overload,no-any-return]


# --- request guards ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/claude"])
def test_request_reject_in_openai_schema(gateway: GatewayProcess, fake: FakeProviderThread, prefix: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        ask(oai(gateway, prefix), "my ssn is 123-45-6789")
    body = err.value.response.json()
    assert body["error"] == {
        "message": "No SSNs, please.",
        "type": "invalid_request_error",
        "code": "guardrail_rejected",
        "param": None,
    }
    assert not [h for h in err.value.response.headers if h.startswith("x-llmgw")]  # stage-to-stage headers stay inside
    assert fake.requests == []


def test_request_reject_in_anthropic_schema(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    with pytest.raises(anthropic.UnprocessableEntityError) as err:
        claude(gateway).messages.create(
            model="claude-x", max_tokens=20, messages=[{"role": "user", "content": "ssn 123-45-6789"}]
        )
    body = err.value.response.json()
    assert body["type"] == "error" and body["error"]["message"] == "No SSNs, please."
    assert fake.requests == []


@pytest.mark.parametrize("prefix", ["", "/claude"])
def test_request_mask_is_what_the_provider_sees(gateway: GatewayProcess, fake: FakeProviderThread, prefix: str) -> None:
    resp = ask(oai(gateway, prefix), "write to bob@example.com please")
    [rec] = fake.requests
    assert "bob@example.com" not in rec.body and "write to <EMAIL_ADDRESS> please" in rec.body
    assert resp.choices[0].message.content is not None and "<EMAIL_ADDRESS>" in resp.choices[0].message.content


def test_anthropic_client_request_mask(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    claude(gateway).messages.create(
        model="claude-x",
        max_tokens=20,
        system="reply to bob@example.com",
        messages=[{"role": "user", "content": "hi from alice@example.org"}],
    )
    [rec] = fake.requests
    sent = json.loads(rec.body)
    assert sent["system"] == "reply to <EMAIL_ADDRESS>"
    assert sent["messages"][0]["content"] == "hi from <EMAIL_ADDRESS>"


# --- response guards -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/claude"])
def test_response_mask_json(gateway: GatewayProcess, fake: FakeProviderThread, prefix: str) -> None:
    fake.set_behaviour(response_text=CARD_TEXT)
    resp = ask(oai(gateway, prefix), "my card?")
    assert resp.choices[0].message.content == MASKED_CARD_TEXT


def test_response_mask_json_anthropic_client(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    fake.set_behaviour(response_text=CARD_TEXT)
    msg = claude(gateway).messages.create(model="c", max_tokens=20, messages=[{"role": "user", "content": "card?"}])
    assert msg.content[0].type == "text" and msg.content[0].text == MASKED_CARD_TEXT


@pytest.mark.parametrize("prefix", ["", "/claude"])
def test_streamed_mask_card_split_over_many_events(
    gateway: GatewayProcess, fake: FakeProviderThread, prefix: str
) -> None:
    fake.set_behaviour(response_text=CARD_TEXT, chunks=len(CARD_TEXT))  # one character per SSE event
    deltas = [
        c.choices[0].delta.content or ""
        for c in ask(oai(gateway, prefix), "card?", stream=True)  # type: ignore[union-attr]
        if c.choices
    ]
    assert "".join(deltas) == MASKED_CARD_TEXT
    assert not any(frag in d for d in deltas for frag in CARD_FRAGMENTS)


def test_streamed_mask_anthropic_client(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    fake.set_behaviour(response_text=CARD_TEXT, chunks=7)
    with claude(gateway).messages.stream(
        model="c", max_tokens=20, messages=[{"role": "user", "content": "card?"}]
    ) as stream:
        pieces = list(stream.text_stream)
    assert "".join(pieces) == MASKED_CARD_TEXT
    assert not any(frag in p for p in pieces for frag in CARD_FRAGMENTS)


@pytest.mark.parametrize("prefix", ["", "/claude"])
def test_streamed_reject_ends_with_an_error_event(
    gateway: GatewayProcess, fake: FakeProviderThread, prefix: str
) -> None:
    fake.set_behaviour(response_text="The code is TOP-SECRET-42 for sure.", chunks=9)
    seen = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in ask(oai(gateway, prefix), "code?", stream=True):  # type: ignore[union-attr]
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "That answer is classified." in str(err.value)
    assert "TOP-SECRET" not in seen


def test_json_reject_in_client_schema(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    fake.set_behaviour(response_text="The code is TOP-SECRET-7.")
    with pytest.raises(anthropic.PermissionDeniedError) as err:
        claude(gateway).messages.create(model="c", max_tokens=20, messages=[{"role": "user", "content": "code?"}])
    assert err.value.response.json()["error"] == {"type": "permission_error", "message": "That answer is classified."}


# --- webhook -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/a-hook", "/f-hook"])  # OpenAI upstream, Anthropic upstream
def test_webhook_pass_mask_reject(
    gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails, prefix: str
) -> None:
    client = oai(gateway, prefix)
    assert ask(client, "hello").choices[0].message.content == "Hello from fake: hello"
    assert [r.path for r in services.requests] == ["/request", "/response"]
    assert services.requests[0].body == {"body": {"messages": [{"role": "user", "content": "hello"}]}}
    services.clear()
    fake.clear()
    resp = ask(client, "please MASKME")
    assert "MASKME" not in fake.requests[0].body and "please [webhook-masked]" in fake.requests[0].body
    assert resp.choices[0].message.content == "Hello from fake: please [webhook-masked]"
    fake.clear()
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "REJECTME now")
    assert err.value.status_code == 451 and err.value.response.json()["error"]["message"] == "blocked by the webhook"
    assert fake.requests == []
    fake.set_behaviour(response_text="answer with MASKME inside")
    assert ask(client, "q").choices[0].message.content == "answer with [webhook-masked] inside"


@pytest.mark.parametrize("prefix", ["/a-hook", "/f-hook"])
def test_webhook_on_streamed_responses(
    gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails, prefix: str
) -> None:
    """A remote guard judges the whole streamed answer: held, then released masked, or ended with an error."""
    client = oai(gateway, prefix)
    fake.set_behaviour(response_text="streamed MASKME answer", chunks=6)
    deltas = [c.choices[0].delta.content or "" for c in ask(client, "q", stream=True) if c.choices]  # type: ignore[union-attr]
    assert "".join(deltas) == "streamed [webhook-masked] answer"
    assert not any("MASKME" in d for d in deltas)
    assert services.requests[-1].body == {
        "body": {"choices": [{"message": {"role": "assistant", "content": "streamed MASKME answer"}}]}
    }
    fake.set_behaviour(response_text="streamed REJECTME answer", chunks=6)
    seen = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in ask(client, "q", stream=True):  # type: ignore[union-attr]
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "blocked by the webhook" in str(err.value) and "REJECTME" not in seen


def test_webhook_down_fail_open_and_fail_closed(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    assert ask(oai(gateway, "/b-open"), "hi").choices[0].message.content == "Hello from fake: hi"
    fake.clear()
    with pytest.raises(openai.APIStatusError) as err:
        ask(oai(gateway, "/c-down"), "hi")
    assert err.value.status_code == 503
    assert err.value.response.json()["error"]["code"] == "guardrail_unavailable"
    assert fake.requests == []


# --- moderation ----------------------------------------------------------------------------------


def test_openai_moderation(gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails) -> None:
    client = oai(gateway, "/d-mod")
    assert ask(client, "a calm question").choices[0].message.content == "Hello from fake: a calm question"
    [mod] = services.requests
    assert mod.path == "/v1/moderations" and mod.headers["authorization"] == "Bearer sk-moderation-key"
    assert mod.body == {"input": ["a calm question"], "model": "omni-moderation-latest"}
    fake.clear()
    with pytest.raises(openai.PermissionDeniedError) as err:
        ask(client, "FLAGME")
    assert err.value.response.json()["error"]["message"] == "The request was rejected due to inappropriate content"
    assert fake.requests == []


# --- Bedrock Guardrails, Model Armor, Azure AI Content Safety -------------------------------------


def test_cloud_guards_in_order_on_request_and_response(
    gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails
) -> None:
    """OpenAI client, Anthropic upstream: each service asked in turn, with its credential and wire shape."""
    resp = ask(oai(gateway, "/e-cloud"), "please ANONYMIZEME")
    assert [r.path for r in services.requests] == [
        "/guardrail/gr-1/version/2/apply",
        "/v1/projects/p/locations/us-central1/templates/t:sanitizeUserPrompt",
        "/contentsafety/text:analyze",
        "/guardrail/gr-1/version/2/apply",
        "/v1/projects/p/locations/us-central1/templates/t:sanitizeModelResponse",
        "/contentsafety/text:analyze",
    ]
    bedrock, armor, azure = services.requests[:3]
    assert "/eu-west-1/bedrock/aws4_request" in bedrock.headers["authorization"]
    assert bedrock.body == {"source": "INPUT", "content": [{"text": {"text": "please ANONYMIZEME"}}]}
    assert armor.headers["authorization"].startswith("Bearer ") and armor.body == {
        "userPromptData": {"text": "please {ANONYMIZED}"}
    }
    assert azure.headers["ocp-apim-subscription-key"] == "az-content-key"
    assert json.loads(fake.requests[0].body)["messages"][0]["content"] == [
        {"type": "text", "text": "please {ANONYMIZED}"}
    ]
    assert resp.choices[0].message.content == "Hello from fake: please {ANONYMIZED}"
    assert services.requests[3].body["source"] == "OUTPUT"


@pytest.mark.parametrize("marker", ["BLOCKME", "BLOCKLISTME"])
def test_cloud_guards_reject(gateway: GatewayProcess, fake: FakeProviderThread, marker: str) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        ask(oai(gateway, "/e-cloud"), f"tell me {marker}")
    assert fake.requests == []
    fake.set_behaviour(response_text=f"answer {marker}")
    with pytest.raises(anthropic.PermissionDeniedError) as err:
        anthropic.Anthropic(base_url=f"{gateway.url}/e-cloud", api_key="k", max_retries=0).messages.create(
            model="c", max_tokens=9, messages=[{"role": "user", "content": "q"}]
        )
    assert err.value.response.json()["error"]["message"] == "The response was rejected due to inappropriate content"


def test_cloud_guards_on_a_streamed_answer(
    gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails
) -> None:
    fake.set_behaviour(response_text="streamed ANONYMIZEME reply", chunks=5)
    deltas = [c.choices[0].delta.content or "" for c in ask(oai(gateway, "/e-cloud"), "q", stream=True) if c.choices]  # type: ignore[union-attr]
    assert "".join(deltas) == "streamed {ANONYMIZED} reply"
    assert [r.path.rsplit(":", 1)[-1] for r in services.requests[-3:]] == [
        "/guardrail/gr-1/version/2/apply",
        "sanitizeModelResponse",
        "analyze",
    ]
    assert services.requests[-3].body == {
        "source": "OUTPUT",
        "content": [{"text": {"text": "streamed ANONYMIZEME reply"}}],
    }
    fake.set_behaviour(response_text="streamed BLOCKME reply", chunks=5)
    with pytest.raises(openai.APIError) as err:
        list(ask(oai(gateway, "/e-cloud"), "q", stream=True))  # type: ignore[call-overload]
    assert "The response was rejected due to inappropriate content" in str(err.value)


def test_cloud_guard_down_fails_closed(
    gateway: GatewayProcess, fake: FakeProviderThread, services: FakeGuardrails
) -> None:
    services.mode = "error"
    with pytest.raises(openai.APIStatusError) as err:
        ask(oai(gateway, "/e-cloud"), "hi")
    assert err.value.status_code == 503 and err.value.response.json()["error"]["code"] == "guardrail_unavailable"
    assert fake.requests == []
    assert "guard-aws-secret" not in gateway.log() and "az-content-key" not in gateway.log()


# --- observability -------------------------------------------------------------------------------


def test_decisions_are_metrics(gateway: GatewayProcess, fake: FakeProviderThread) -> None:
    secret_prompt = "zebra-prompt-text ssn 123-45-6789"
    with pytest.raises(openai.UnprocessableEntityError):
        ask(oai(gateway), secret_prompt)
    fake.set_behaviour(response_text=CARD_TEXT)
    ask(oai(gateway, "/claude"), "masked-answer-please")

    def guard_metrics() -> str | None:
        text = gateway.metrics()
        return text if 'action="reject"' in text and 'phase="response"' in text else None

    metrics = wait_until(guard_metrics, "guard metrics")
    lines = [line for line in metrics.splitlines() if line.startswith("llmgw_guardrail_checks_total{")]
    assert any('guardrail="regex"' in x and 'phase="request"' in x and 'action="reject"' in x for x in lines)
    assert any('phase="response"' in x and 'action="mask"' in x and 'route="default/r"' in x for x in lines)
    assert "zebra-prompt-text" not in metrics


def test_decisions_are_access_log_fields(gateway_factory: type[GatewayProcess], fake: FakeProviderThread) -> None:
    """Both request-guard paths (router stage on a direct route, attempt stage) and both response kinds."""
    gw = gateway_factory(workers=1)
    gw.write("gw.yaml", manifests(port=gw.port, upstream=fake.port, guards=free_port(), dead=free_port()))
    gw.start()
    with pytest.raises(openai.UnprocessableEntityError):
        ask(oai(gw), "zebra-prompt-text ssn 123-45-6789")
    fake.set_behaviour(response_text=CARD_TEXT)
    ask(oai(gw, "/claude"), "zebra-prompt-text to bob@example.com")
    list(ask(oai(gw), "zebra-prompt-text", stream=True))  # type: ignore[call-overload]
    # Envoy flushes its access log about once a second: wait for the three lines (a loaded
    # machine can stop it before the last flush).
    wait_until(
        lambda: sum('"guardrail.' in line for line in gw.log().splitlines()) >= 3 or None,
        "three guarded access-log lines",
    )
    assert gw.stop() == 0
    log = gw.log()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"guardrail.' in line]
    fields = [
        (e["route"].split("/")[3:5], e["status"], e["guardrail.request"], e["guardrail.response"]) for e in entries
    ]
    assert (["rule", "0"], 422, "regex:reject", None) in fields
    assert (["rule", "1"], 200, "regex:allow,regex:mask", "regex:mask,regex:allow") in fields
    assert (["rule", "0"], 200, "regex:allow,regex:allow", "regex:mask,regex:allow") in fields
    assert "zebra-prompt-text" not in log and "bob@example.com" not in log
