"""Calls to remote guard services, each in its own wire protocol; a `Verdict` back.

- `webhook`: agentgateway's guardrail webhook protocol (crates/agentgateway/src/llm/policy/
  webhook.rs). `POST /request` with `{"body": {"messages": [{role, content}]}}`, `POST /response`
  with `{"body": {"choices": [{"message": {role, content}}]}}`; the answer is
  `{"action": ...}`, where the action is a mask `{"body": {"messages"|"choices": [...]},
  "reason"}`, a reject `{"body": "<message>", "status_code": N, "reason"}` or a pass `{"reason"}`.
- `openAIModeration`: `POST /v1/moderations` `{"input": [texts], "model"}`; any `flagged` rejects.
- `bedrockGuardrails`: ApplyGuardrail, `POST /guardrail/{id}/version/{v}/apply` `{"source":
  "INPUT"|"OUTPUT", "content": [{"text": {"text"}}]}`, SigV4 (service `bedrock`) via the same
  botocore signer as Bedrock providers. Intervened with only ANONYMIZED assessments and one output
  per block masks; any other intervention rejects (as agentgateway).
- `googleModelArmor`: `POST /v1/projects/P/locations/L/templates/T:sanitizeUserPrompt` (or
  `:sanitizeModelResponse`) with `userPromptData`/`modelResponseData`; any filter whose
  `matchState` is `MATCH_FOUND` rejects. GCP OAuth token as for Vertex AI.
- `azureContentSafety`: `POST /contentsafety/text:analyze` (severity at or above the threshold,
  or a blocklist hit, rejects) and `text:detectJailbreak` (requests only), with an Entra ID token
  (cognitiveservices scope) or a resource key.

Failures (unreachable, timeout, non-2xx, unreadable answer) raise `GuardUnavailable`; the engine
applies the failure mode. Messages name the guard and the status, never a credential or the text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from extproc.contract import ProviderConfig
from extproc.credentials import CredentialError, SignedRequest, auth_headers
from extproc.policies.guards.config import GuardConfig

if TYPE_CHECKING:
    import aiohttp

# aiohttp (its client: ~10 MiB per worker) is imported on the first guard call, not when the
# worker starts: most gateways configure no remote guard.
MAX_ANSWER_BYTES = 4 << 20
# The worker's session (opened by `open_shared`): connections to guard services are kept and
# reused, so a TLS service costs one handshake per connection, not one per request.
_shared: aiohttp.ClientSession | None = None
_shared_loop: asyncio.AbstractEventLoop | None = None


async def open_shared() -> None:
    """Reuse connections to guard services in this event loop (the worker calls it once; the session opens on use)."""
    global _shared_loop
    _shared_loop = asyncio.get_running_loop()


async def close_shared() -> None:
    global _shared, _shared_loop
    session, _shared, _shared_loop = _shared, None, None
    if session is not None:
        await session.close()


def _session() -> tuple[aiohttp.ClientSession, bool]:
    """(session, whether the caller owns it): the worker's, or one for this call (tests, other loops)."""
    global _shared
    import aiohttp

    if _shared_loop is not asyncio.get_running_loop():
        return aiohttp.ClientSession(), True
    if _shared is None or _shared.closed:
        _shared = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30))
    return _shared, False


class GuardUnavailable(Exception):
    """The guard service could not give a verdict."""


@dataclass
class Verdict:
    action: str  # allow | mask | reject
    replacements: list[str] = field(default_factory=list)  # mask: one text per text sent
    status: int | None = None  # reject: the service's own status (webhook), else the guard's
    message: str | None = None  # reject: the service's own message (webhook), else the guard's


ALLOW = Verdict("allow")


async def _post(
    guard: GuardConfig,
    path: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    sign_as: ProviderConfig | None = None,
) -> Any:
    raw = orjson.dumps(body)
    url = guard.url.rstrip("/") + path
    out = {"content-type": "application/json", "accept": "application/json", **(headers or {})}
    if sign_as is not None:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        signed = SignedRequest(method="POST", authority=parts.netloc, path=target, headers=dict(out), body=raw)
        try:
            out.update(auth_headers(sign_as, signed))
        except CredentialError as exc:
            raise GuardUnavailable(f"{guard.kind}: no credential: {exc}") from None
    import aiohttp

    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=guard.connect_timeout_s)
        session, owned = _session()
        try:
            async with session.post(
                url,
                data=raw,
                headers=out,
                timeout=timeout,
                ssl=bool(guard.verify_tls),
                server_hostname=guard.sni or None,
            ) as resp:
                data = await resp.content.read(MAX_ANSWER_BYTES)
                if not 200 <= resp.status < 300:
                    raise GuardUnavailable(f"{guard.kind}: {urlsplit(url).netloc} answered HTTP {resp.status}")
        finally:
            if owned:
                await session.close()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise GuardUnavailable(f"{guard.kind}: {urlsplit(url).netloc} unreachable: {type(exc).__name__}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise GuardUnavailable(f"{guard.kind}: the answer is not JSON") from None


def _as_provider(guard: GuardConfig, kind: str) -> ProviderConfig:
    """A provider-shaped view of the guard's credential, for extproc.credentials."""
    host = urlsplit(guard.url).netloc
    return ProviderConfig(
        id=f"guard/{guard.kind}/{host}",
        backend="",
        kind=kind,
        host=host,
        auth=guard.auth,
        settings={"region": guard.settings.get("region", "")} if guard.settings.get("region") else {},
    )


def credential_views(guards: Iterable[GuardConfig]) -> list[ProviderConfig]:
    """Provider-shaped views of the guards' token credentials, so they are fetched before the first request."""
    return [v for g in guards if (v := _credential_headers(g)[1]) is not None]


def _credential_headers(guard: GuardConfig) -> tuple[dict[str, str], ProviderConfig | None]:
    """(static headers, provider to sign/mint tokens as) for the guard's auth."""
    auth = guard.auth
    if auth is None:
        return {}, None
    if auth.kind == "header":
        return {auth.header: auth.header_value()}, None
    kind = {"aws": "bedrock", "gcp": "vertexai", "azure": "azure"}.get(auth.kind, auth.kind)
    return {}, _as_provider(guard, kind)


async def webhook(
    guard: GuardConfig, *, phase: str, messages: Sequence[tuple[str, str]], headers: Mapping[str, str], timeout_s: float
) -> Verdict:
    if phase == "request":
        body: dict[str, Any] = {"body": {"messages": [{"role": r, "content": c} for r, c in messages]}}
    else:
        body = {"body": {"choices": [{"message": {"role": r, "content": c}} for r, c in messages]}}
    answer = await _post(guard, f"/{phase}", body, headers=headers, timeout_s=timeout_s)
    action = answer.get("action") if isinstance(answer, dict) else None
    if not isinstance(action, dict):
        raise GuardUnavailable("webhook: the answer has no `action` object")
    content = action.get("body")
    if isinstance(content, dict):  # mask
        items = content.get("messages" if phase == "request" else "choices")
        if not isinstance(items, list) or len(items) != len(messages):
            raise GuardUnavailable("webhook: a mask must return one message per message sent")
        texts = []
        for item in items:
            msg = item.get("message") if phase == "response" and isinstance(item, dict) else item
            text = msg.get("content") if isinstance(msg, dict) else None
            if not isinstance(text, str):
                raise GuardUnavailable("webhook: a masked message has no text `content`")
            texts.append(text)
        return Verdict("mask", replacements=texts)
    if isinstance(content, str) and "status_code" in action:  # reject
        status = action.get("status_code")
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise GuardUnavailable("webhook: a reject's status_code must be an HTTP status")
        return Verdict("reject", status=status, message=content)
    return ALLOW


async def moderation(guard: GuardConfig, *, texts: Sequence[str], timeout_s: float) -> Verdict:
    static, _ = _credential_headers(guard)
    body = {"input": list(texts), "model": guard.settings.get("model", "omni-moderation-latest")}
    answer = await _post(guard, "/v1/moderations", body, headers=static, timeout_s=timeout_s)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise GuardUnavailable("openAIModeration: the answer has no `results`")
    flagged = any(isinstance(r, dict) and r.get("flagged") is True for r in results)
    return Verdict("reject") if flagged else ALLOW


def _has_action(node: Any, action: str) -> bool:
    if isinstance(node, dict):
        return node.get("action") == action or any(_has_action(v, action) for v in node.values())
    if isinstance(node, list):
        return any(_has_action(v, action) for v in node)
    return False


async def bedrock(guard: GuardConfig, *, phase: str, texts: Sequence[str], timeout_s: float) -> Verdict:
    static, signer = _credential_headers(guard)
    ident, version = quote(guard.settings["identifier"], safe=""), quote(guard.settings["version"], safe="")
    body = {"source": "INPUT" if phase == "request" else "OUTPUT", "content": [{"text": {"text": t}} for t in texts]}
    answer = await _post(
        guard,
        f"/guardrail/{ident}/version/{version}/apply",
        body,
        headers=static,
        timeout_s=timeout_s,
        sign_as=signer,
    )
    if not isinstance(answer, dict) or "action" not in answer:
        raise GuardUnavailable("bedrockGuardrails: the answer has no `action`")
    if answer["action"] != "GUARDRAIL_INTERVENED":
        return ALLOW
    assessments = answer.get("assessments") or []
    outputs = [o.get("text") for o in answer.get("outputs") or () if isinstance(o, dict)]
    anonymized = _has_action(assessments, "ANONYMIZED") and not _has_action(assessments, "BLOCKED")
    if anonymized and len(outputs) == len(texts) and all(isinstance(o, str) for o in outputs):
        return Verdict("mask", replacements=[str(o) for o in outputs])
    return Verdict("reject")


def _match_found(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("matchState") == "MATCH_FOUND" or node.get("filterMatchState") == "MATCH_FOUND":
            return True
        return any(_match_found(v) for v in node.values())
    if isinstance(node, list):
        return any(_match_found(v) for v in node)
    return False


async def model_armor(guard: GuardConfig, *, phase: str, texts: Sequence[str], timeout_s: float) -> Verdict:
    _, signer = _credential_headers(guard)
    s = guard.settings
    project, location, template = (quote(s[k], safe="") for k in ("projectId", "location", "templateId"))
    if phase == "request":
        method, body = "sanitizeUserPrompt", {"userPromptData": {"text": "\n".join(texts)}}
    else:
        method, body = "sanitizeModelResponse", {"modelResponseData": {"text": "\n".join(texts)}}
    path = f"/v1/projects/{project}/locations/{location}/templates/{template}:{method}"
    answer = await _post(guard, path, body, timeout_s=timeout_s, sign_as=signer)
    if not isinstance(answer, dict):
        raise GuardUnavailable("googleModelArmor: the answer is not an object")
    return Verdict("reject") if _match_found(answer.get("sanitizationResult")) else ALLOW


async def azure_content_safety(guard: GuardConfig, *, phase: str, texts: Sequence[str], timeout_s: float) -> Verdict:
    static, signer = _credential_headers(guard)
    s = guard.settings
    text = "\n".join(texts)
    if s.get("analyzeText"):
        body: dict[str, Any] = {"text": text}
        if s.get("blocklistNames"):
            body["blocklistNames"] = s["blocklistNames"].split(",")
        if "haltOnBlocklistHit" in s:
            body["haltOnBlocklistHit"] = s["haltOnBlocklistHit"] == "true"
        path = f"/contentsafety/text:analyze?api-version={quote(s['analyzeApiVersion'], safe='')}"
        answer = await _post(guard, path, body, headers=static, timeout_s=timeout_s, sign_as=signer)
        if not isinstance(answer, dict):
            raise GuardUnavailable("azureContentSafety: the answer is not an object")
        threshold = int(s.get("severityThreshold", "2"))
        severities = [c.get("severity") for c in answer.get("categoriesAnalysis") or () if isinstance(c, dict)]
        if answer.get("blocklistsMatch") or any(isinstance(v, int) and v >= threshold for v in severities):
            return Verdict("reject")
    if s.get("detectJailbreak") and phase == "request":
        path = f"/contentsafety/text:detectJailbreak?api-version={quote(s['jailbreakApiVersion'], safe='')}"
        answer = await _post(guard, path, {"text": text}, headers=static, timeout_s=timeout_s, sign_as=signer)
        analysis = answer.get("jailbreakAnalysis") if isinstance(answer, dict) else None
        if isinstance(analysis, dict) and analysis.get("detected") is True:
            return Verdict("reject")
    return ALLOW
