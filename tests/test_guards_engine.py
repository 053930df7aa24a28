"""Guards on parsed bodies, remote kinds against protocol-faithful fakes that record what they got.

Covers what each service receives (path, credential, body shape), pass/mask/reject for each
kind, scopes, webhook failure modes (down, hanging past its timeout) and the metric labels.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc import metrics
from extproc.contract import AuthConfig
from extproc.credentials import azure as credentials_azure
from extproc.policies.guards import engine
from extproc.policies.guards import remote as guard_services
from extproc.policies.guards.config import GuardConfig, HeaderMatchConfig
from tests.fakes.entra import FakeEntra
from tests.fakes.guardrails import FakeGuardrails
from tests.gcp_fake import FakeTokenServer


@pytest.fixture(scope="module")
def service() -> Iterator[FakeGuardrails]:
    fake = FakeGuardrails().start()
    yield fake
    fake.stop()


@pytest.fixture
def svc(service: FakeGuardrails) -> FakeGuardrails:
    service.clear()
    return service


def chat(*texts: str, system: str = "be kind") -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}, *({"role": "user", "content": t} for t in texts)],
    }


def run(
    guards: tuple[GuardConfig, ...],
    body: dict[str, Any],
    *,
    op: str = "chat_completions",
    phase: str = "request",
    headers: dict[str, str] | None = None,
) -> engine.Outcome:
    return asyncio.run(engine.run(guards, body, op=op, phase=phase, headers=headers or {}, route="default/r"))


def remote(svc: FakeGuardrails, kind: str, **kw: Any) -> GuardConfig:
    return GuardConfig(kind=kind, message="Rejected by policy.", url=f"http://127.0.0.1:{svc.port}", **kw)


def checks(action: str, guard: str = "regex", phase: str = "request") -> float:
    value = metrics.GUARDRAIL_CHECKS.labels(guard, phase, action, "default/r")._value.get()
    return float(value)


# --- regex ---------------------------------------------------------------------------------------


def test_regex_mask_and_reject_in_scope_only() -> None:
    mask = GuardConfig(kind="regex", message="x", builtins=("Email",), scope=("Messages",))
    body = chat("mail me at a@b.co", system="admin is root@corp.example")
    before = checks("mask")
    out = run((mask,), body)
    assert out.masked and out.decisions == [("regex", "mask")] and checks("mask") == before + 1
    assert body["messages"][1]["content"] == "mail me at <EMAIL_ADDRESS>"
    assert body["messages"][0]["content"] == "admin is root@corp.example"  # SystemPrompt not in scope
    reject = GuardConfig(kind="regex", message="No SSNs.", status=422, action="Reject", builtins=("Ssn",))
    out = run((reject,), chat("ssn 123-45-6789"))
    assert out.rejection == engine.Rejection(422, "No SSNs.", "guardrail_rejected")


def test_regex_tool_scopes_in_both_schemas() -> None:
    guard = GuardConfig(kind="regex", message="x", builtins=("CreditCard",), scope=("ToolInput", "ToolOutput"))
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "card 4111111111111111"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "1", "function": {"name": "pay", "arguments": '{"card": "4111111111111111"}'}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "charged 5500000000000004"},
        ],
    }
    run((guard,), body)
    assert body["messages"][0]["content"] == "card 4111111111111111"
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"card": "<CREDIT_CARD>"}'
    assert body["messages"][2]["content"] == "charged <CREDIT_CARD>"
    anthropic = {
        "system": [{"type": "text", "text": "card 4111111111111111"}],
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "pay", "input": {"card": "4111111111111111"}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok 5500000000000004"}],
            },
        ],
    }
    run((guard,), anthropic, op="messages")
    assert anthropic["system"][0]["text"] == "card 4111111111111111"
    assert anthropic["messages"][0]["content"][0]["input"] == {"card": "<CREDIT_CARD>"}
    assert anthropic["messages"][1]["content"][0]["content"] == "ok <CREDIT_CARD>"


def test_response_bodies_of_each_schema() -> None:
    guard = GuardConfig(kind="regex", message="x", builtins=("CreditCard",))
    openai_body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "use 4111111111111111"}}]}
    run((guard,), openai_body, phase="response")
    assert openai_body["choices"][0]["message"]["content"] == "use <CREDIT_CARD>"
    anthropic_body = {"content": [{"type": "text", "text": "use 4111111111111111"}, {"type": "tool_use", "input": {}}]}
    run((guard,), anthropic_body, op="messages", phase="response")
    assert anthropic_body["content"][0]["text"] == "use <CREDIT_CARD>"


# --- webhook -------------------------------------------------------------------------------------


def test_webhook_pass_mask_reject_and_what_it_received(svc: FakeGuardrails) -> None:
    hook = remote(svc, "webhook", forward_headers=(HeaderMatchConfig("Exact", "x-tenant", "acme"),))
    body = chat("hello there")
    out = run((hook,), body, headers={"x-tenant": "acme", "authorization": "Bearer client-secret"})
    assert out.decisions == [("webhook", "allow")] and not out.masked
    [rec] = svc.requests
    assert rec.path == "/request" and rec.body == {
        "body": {"messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"}]}
    }
    assert rec.headers["x-tenant"] == "acme" and "authorization" not in rec.headers
    body = chat("please MASKME now")
    out = run((hook,), body)
    assert out.masked and body["messages"][1]["content"] == "please [webhook-masked] now"
    out = run((hook,), chat("REJECTME"))
    assert out.rejection == engine.Rejection(451, "blocked by the webhook", "guardrail_rejected")
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "say MASKME"}}]}
    out = run((hook,), response, phase="response")
    assert svc.requests[-1].path == "/response"
    assert svc.requests[-1].body == {"body": {"choices": [{"message": {"role": "assistant", "content": "say MASKME"}}]}}
    assert response["choices"][0]["message"]["content"] == "say [webhook-masked]"


def test_webhook_failure_modes(svc: FakeGuardrails) -> None:
    closed = remote(svc, "webhook")
    opened = remote(svc, "webhook", failure_mode="FailOpen")
    svc.mode = "error"
    assert run((closed,), chat("x")).rejection == engine.Rejection(
        503, engine.UNAVAILABLE_MESSAGE, "guardrail_unavailable"
    )
    assert run((opened,), chat("x")).decisions == [("webhook", "fail_open")]
    svc.mode, svc.hang_s = "hang", 2.0
    slow_closed = remote(svc, "webhook", timeout_s=0.2)
    slow_open = remote(svc, "webhook", timeout_s=0.2, failure_mode="FailOpen")
    assert run((slow_closed,), chat("x")).decisions == [("webhook", "error")]
    assert run((slow_open,), chat("x")).decisions == [("webhook", "fail_open")]
    down = GuardConfig(kind="webhook", message="x", url="http://127.0.0.1:9", timeout_s=0.5)
    assert run((down,), chat("x")).rejection is not None


# --- cloud services ------------------------------------------------------------------------------


def test_openai_moderation(svc: FakeGuardrails) -> None:
    key = AuthConfig(header="authorization", prefix="Bearer ", value="sk-mod-key", source="inline key")
    guard = remote(svc, "openAIModeration", auth=key, settings={"model": "omni-moderation-latest"})
    assert run((guard,), chat("a nice day")).decisions == [("openAIModeration", "allow")]
    rec = svc.requests[-1]
    assert rec.path == "/v1/moderations" and rec.headers["authorization"] == "Bearer sk-mod-key"
    assert rec.body == {"input": ["be kind", "a nice day"], "model": "omni-moderation-latest"}
    out = run((guard,), chat("FLAGME please"))
    assert out.rejection == engine.Rejection(403, "Rejected by policy.", "guardrail_rejected")
    assert "sk-mod-key" not in repr(guard)


def test_bedrock_guardrails_sigv4_mask_and_block(svc: FakeGuardrails) -> None:
    auth = AuthConfig(
        kind="aws", source="secret default/aws", params={"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t"}
    )
    guard = remote(
        svc,
        "bedrockGuardrails",
        auth=auth,
        settings={"identifier": "gr-1", "version": "2", "region": "eu-west-1"},
        scope=("Messages",),
    )
    body = chat("call ANONYMIZEME today", system="ANONYMIZEME too")
    out = run((guard,), body)
    rec = svc.requests[-1]
    assert rec.path == "/guardrail/gr-1/version/2/apply"
    assert "/eu-west-1/bedrock/aws4_request" in rec.headers["authorization"]
    assert rec.body == {"source": "INPUT", "content": [{"text": {"text": "call ANONYMIZEME today"}}]}
    assert out.masked and body["messages"][1]["content"] == "call {ANONYMIZED} today"
    assert body["messages"][0]["content"] == "ANONYMIZEME too"
    assert run((guard,), chat("BLOCKME")).rejection is not None
    response = {"choices": [{"message": {"role": "assistant", "content": "BLOCKME"}}]}
    assert run((guard,), response, phase="response").rejection is not None
    assert svc.requests[-1].body["source"] == "OUTPUT"


def test_google_model_armor_with_a_service_account(svc: FakeGuardrails) -> None:
    oauth = FakeTokenServer().start()
    try:
        sa = oauth.service_account(token_uri=oauth.token_uri)
        auth = AuthConfig(kind="gcp", source="secret default/sa", params={"credentials_json": json.dumps(sa)})
        guard = remote(
            svc,
            "googleModelArmor",
            auth=auth,
            settings={"projectId": "p", "location": "us-central1", "templateId": "t"},
        )
        assert run((guard,), chat("hello")).decisions == [("googleModelArmor", "allow")]
        rec = svc.requests[-1]
        assert rec.path == "/v1/projects/p/locations/us-central1/templates/t:sanitizeUserPrompt"
        assert rec.body == {"userPromptData": {"text": "be kind\nhello"}}
        assert rec.headers["authorization"].startswith("Bearer ")
        assert run((guard,), chat("BLOCKME")).rejection is not None
        response = {"content": [{"type": "text", "text": "fine"}]}
        assert run((guard,), response, op="messages", phase="response").decisions == [("googleModelArmor", "allow")]
        assert svc.requests[-1].path.endswith(":sanitizeModelResponse")
        assert svc.requests[-1].body == {"modelResponseData": {"text": "fine"}}
    finally:
        oauth.stop()


def test_azure_content_safety_with_a_resource_key(svc: FakeGuardrails) -> None:
    key = AuthConfig(header="ocp-apim-subscription-key", prefix="", value="az-key", source="inline key")
    settings = {
        "analyzeText": "1",
        "severityThreshold": "4",
        "analyzeApiVersion": "2024-09-01",
        "blocklistNames": "words",
        "detectJailbreak": "1",
        "jailbreakApiVersion": "2024-02-15-preview",
    }
    guard = remote(svc, "azureContentSafety", auth=key, settings=settings)
    assert run((guard,), chat("hi")).decisions == [("azureContentSafety", "allow")]
    analyze, jailbreak = svc.requests[-2:]
    assert (analyze.path, analyze.query) == ("/contentsafety/text:analyze", "api-version=2024-09-01")
    assert analyze.body == {"text": "be kind\nhi", "blocklistNames": ["words"]}
    assert analyze.headers["ocp-apim-subscription-key"] == "az-key"
    assert (jailbreak.path, jailbreak.query) == (
        "/contentsafety/text:detectJailbreak",
        "api-version=2024-02-15-preview",
    )
    for marker in ("BLOCKME", "BLOCKLISTME", "JAILBREAKME"):
        assert run((guard,), chat(marker)).rejection is not None, marker
    svc.clear()
    run((guard,), {"choices": [{"message": {"role": "assistant", "content": "JAILBREAKME"}}]}, phase="response")
    assert [r.path for r in svc.requests] == ["/contentsafety/text:analyze"]  # jailbreak: requests only


def test_guards_run_in_order_and_stop_at_the_first_rejection(svc: FakeGuardrails) -> None:
    mask = GuardConfig(kind="regex", message="x", builtins=("Email",))
    hook = remote(svc, "webhook")
    reject = GuardConfig(kind="regex", message="no", action="Reject", patterns=("never-reached",))
    body = chat("REJECTME a@b.co")
    original = copy.deepcopy(body)
    out = run((mask, hook, reject), body)
    assert out.decisions == [("regex", "mask"), ("webhook", "reject")]
    assert svc.requests[-1].body["body"]["messages"][1]["content"] == "REJECTME <EMAIL_ADDRESS>"
    assert original != body


def test_azure_content_safety_with_an_entra_service_principal(
    svc: FakeGuardrails, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard's Entra ID token comes from the providers' credential module (cognitiveservices scope)."""
    entra = FakeEntra(tmp_path).start()
    credentials_azure.reset()
    try:
        for key, value in entra.entra_env().items():
            monkeypatch.setenv(key, value)
        params = {"mode": "client_secret", "tenant_id": "t-1", "client_id": "c-1", "client_secret": "sp-secret-9"}
        auth = AuthConfig(header="", prefix="", kind="azure", source="secret default/sp", params=params)
        settings = {"analyzeText": "1", "severityThreshold": "2", "analyzeApiVersion": "2024-09-01"}
        guard = remote(svc, "azureContentSafety", auth=auth, settings=settings)
        assert run((guard,), chat("hi")).decisions == [("azureContentSafety", "allow")]
        assert svc.requests[-1].headers["authorization"] == "Bearer entra-at-1"
        [grant] = entra.grants
        assert grant.scope == "https://cognitiveservices.azure.com/.default" and grant.form["client_id"] == "c-1"
    finally:
        credentials_azure.reset()
        entra.stop()


def test_responses_and_completions_requests() -> None:
    guard = GuardConfig(
        kind="regex", message="x", builtins=("Email",), scope=("SystemPrompt", "Messages", "ToolOutput")
    )
    body: dict[str, Any] = {
        "instructions": "cc ops@corp.example",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "to a@b.co"}]},
            {"type": "function_call", "call_id": "1", "name": "f", "arguments": '{"to": "c@d.co"}'},
            {"type": "function_call_output", "call_id": "1", "output": "sent to c@d.co"},
        ],
    }
    run((guard,), body, op="responses")
    assert body["instructions"] == "cc <EMAIL_ADDRESS>"
    assert body["input"][0]["content"][0]["text"] == "to <EMAIL_ADDRESS>"
    assert body["input"][1]["arguments"] == '{"to": "c@d.co"}'  # ToolInput not in this guard's scope
    assert body["input"][2]["output"] == "sent to <EMAIL_ADDRESS>"
    plain: dict[str, Any] = {"input": "write to a@b.co"}
    run((guard,), plain, op="responses")
    assert plain["input"] == "write to <EMAIL_ADDRESS>"
    legacy: dict[str, Any] = {"prompt": ["one a@b.co", "two"]}
    run((guard,), legacy, op="completions")
    assert legacy["prompt"] == ["one <EMAIL_ADDRESS>", "two"]
    answer = {"output": [{"type": "message", "content": [{"type": "output_text", "text": "mail x@y.io"}]}]}
    run((guard,), answer, op="responses", phase="response")
    assert answer["output"][0]["content"][0]["text"] == "mail <EMAIL_ADDRESS>"


def test_the_workers_session_reuses_connections(svc: FakeGuardrails) -> None:
    """Opened by the worker: guard calls share kept-alive connections (one TLS handshake, not one per call)."""
    hook = remote(svc, "webhook")

    async def calls() -> None:
        await guard_services.open_shared()
        try:
            for _ in range(3):
                await engine.run((hook,), chat("x"), op="chat_completions", phase="request", headers={}, route="r")
        finally:
            await guard_services.close_shared()

    asyncio.run(calls())
    assert len({r.client_port for r in svc.requests}) == 1 and len(svc.requests) == 3
    run((hook,), chat("x"))
    run((hook,), chat("x"))
    assert len({r.client_port for r in svc.requests[3:]}) == 2  # without it, one connection per call
