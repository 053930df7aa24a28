"""`policies.ai.promptGuard` (agentgateway's `AIPromptGuard`) -> PromptGuardIR.

One function, `prompt_guard`, reads the block wherever it is written: an AIBackend's or
AgentgatewayBackend's `spec.policies.ai.promptGuard`, and (wired by the policy module)
`AgentgatewayPolicy.spec.backend.ai.promptGuard`. Field names follow agentgateway's CRD
types (controller/api/v1alpha1/agentgateway/ai_policy.go): `streaming`, `request[]` and
`response[]`, each with `response` {message, statusCode}, `scope` (request only) and exactly
one of `regex` {matches, builtins, action}, `webhook` {backendRef, forwardHeaderMatches,
failureMode, headers}, `openAIModeration` {model, policies} (request only),
`bedrockGuardrails` {identifier, version, region, policies}, `googleModelArmor`
{templateId, projectId, location, policies}; plus `azureContentSafety` {endpoint,
analyzeText, detectJailbreak, policies} from agentgateway's standalone config.

llmgw extensions, in both kinds: `host`/`port` on every remote guard (send it there instead
of the service's public endpoint; plain HTTP unless `policies.tls` is set, as for providers)
and `timeout` on `webhook`. A guard call happens inside one ext_proc message, which Envoy
bounds (5 s), so a timeout above `MAX_TIMEOUT_S` is reported, not silently shortened.
Regex patterns are compiled here with RE2 (the engine the extproc uses), so a pattern the
data plane could not run is a problem with its field, not a runtime surprise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.gatewayapi.ai_guard_services import address, fields_of, guard_timeout, service, unknown
from controlplane.gatewayapi.cloud_auth import Ctx
from controlplane.ir import GuardIR, PromptGuardIR, StringMatchIR

BUILTINS = ("Ssn", "CreditCard", "PhoneNumber", "Email", "CaSin")
SCOPES = ("SystemPrompt", "Messages", "ToolInput", "ToolOutput")
DEFAULT_SCOPE = ("SystemPrompt", "Messages")
REQUEST_MESSAGE = "The request was rejected due to inappropriate content"
RESPONSE_MESSAGE = "The response was rejected due to inappropriate content"
MAX_GUARDS = 8  # agentgateway's MaxItems

REQUEST_KINDS = (
    "regex",
    "webhook",
    "openAIModeration",
    "bedrockGuardrails",
    "googleModelArmor",
    "azureContentSafety",
)
RESPONSE_KINDS = ("regex", "webhook", "bedrockGuardrails", "googleModelArmor", "azureContentSafety")
_REMOTE_EXTRA = {"host", "port"}
_KIND_FIELDS: dict[str, set[str]] = {
    "regex": {"matches", "builtins", "action"},
    "webhook": {"backendRef", "headers", "forwardHeaderMatches", "failureMode", "timeout"} | _REMOTE_EXTRA,
    "openAIModeration": {"model", "policies"} | _REMOTE_EXTRA,
    "bedrockGuardrails": {"identifier", "version", "region", "policies"} | _REMOTE_EXTRA,
    "googleModelArmor": {"templateId", "projectId", "location", "policies"} | _REMOTE_EXTRA,
    "azureContentSafety": {"endpoint", "analyzeText", "detectJailbreak", "policies"} | _REMOTE_EXTRA,
}
# Public endpoint of each service kind: (host template, port).
# Which credential kinds each service accepts under policies.auth.


def _re2_error(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def prompt_guard(ctx: Ctx, where: str, block: Any) -> PromptGuardIR | None:
    """Read one `promptGuard` block at field path `where`; problems go to `ctx.fail`.

    Returns None when the block is invalid (every problem in it is reported first).
    """
    before = len(ctx.problems)
    if not isinstance(block, Mapping):
        ctx.fail(where, "must be a mapping with `request` and/or `response`")
        return None
    unknown(ctx, where, block, {"streaming", "request", "response"})
    streaming = block.get("streaming", "Disabled")
    if streaming not in ("Enabled", "Disabled"):
        ctx.fail(f"{where}.streaming", f"must be Enabled or Disabled, got {streaming!r}")
    if "request" not in block and "response" not in block:
        ctx.fail(where, "set `request` and/or `response`")
    request = _guards(ctx, f"{where}.request", block.get("request"), phase="request")
    response = _guards(ctx, f"{where}.response", block.get("response"), phase="response")
    if len(ctx.problems) > before:
        return None
    return PromptGuardIR(request=request, response=response, streaming=streaming == "Enabled")


def _guards(ctx: Ctx, where: str, items: Any, *, phase: str) -> tuple[GuardIR, ...]:
    if items is None:
        return ()
    if not isinstance(items, list) or not items:
        ctx.fail(where, "must be a non-empty list")
        return ()
    if len(items) > MAX_GUARDS:
        ctx.fail(where, f"has {len(items)} guards; at most {MAX_GUARDS}")
    out: list[GuardIR] = []
    for i, item in enumerate(items):
        guard = _guard(ctx, f"{where}[{i}]", item, phase=phase)
        if guard is not None:
            out.append(guard)
    return tuple(out)


def _guard(ctx: Ctx, where: str, item: Any, *, phase: str) -> GuardIR | None:
    if not isinstance(item, Mapping):
        ctx.fail(where, "must be a mapping")
        return None
    kinds = REQUEST_KINDS if phase == "request" else RESPONSE_KINDS
    unknown(ctx, where, item, {*kinds, "response", *({"scope"} if phase == "request" else set())})
    chosen = [k for k in kinds if k in item]
    if len(chosen) != 1:
        ctx.fail(where, f"set exactly one of {', '.join(kinds)}; found {chosen or 'none'}")
        return None
    kind = chosen[0]
    message, status = _rejection(ctx, f"{where}.response", item.get("response"), phase=phase)
    scope = _scope(ctx, f"{where}.scope", item.get("scope"), kind=kind)
    body = item[kind]
    fld = f"{where}.{kind}"
    if not isinstance(body, Mapping):
        ctx.fail(fld, "must be a mapping")
        return None
    unknown(ctx, fld, body, _KIND_FIELDS[kind])
    base = GuardIR(kind=kind, message=message, status=status, scope=scope)
    if kind == "regex":
        return _regex(ctx, fld, body, base)
    if kind == "webhook":
        return _webhook(ctx, fld, body, base)
    return service(ctx, fld, body, base)


def _rejection(ctx: Ctx, where: str, block: Any, *, phase: str) -> tuple[str, int]:
    message = REQUEST_MESSAGE if phase == "request" else RESPONSE_MESSAGE
    if block is None:
        return message, 403
    if not isinstance(block, Mapping) or not block:
        ctx.fail(where, "must be a mapping with `message` and/or `statusCode`")
        return message, 403
    unknown(ctx, where, block, {"message", "statusCode"})
    if "message" in block:
        if not isinstance(block["message"], str) or not block["message"]:
            ctx.fail(f"{where}.message", "must be a non-empty string")
        else:
            message = block["message"]
    status = block.get("statusCode", 403)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        ctx.fail(f"{where}.statusCode", f"must be an integer 200-599, got {status!r}")
        status = 403
    return message, status


def _scope(ctx: Ctx, where: str, scope: Any, *, kind: str) -> tuple[str, ...]:
    if scope is None:
        return DEFAULT_SCOPE
    if not isinstance(scope, list) or not scope or not all(s in SCOPES for s in scope):
        ctx.fail(where, f"must be a non-empty list of {', '.join(SCOPES)}")
        return DEFAULT_SCOPE
    if len(set(scope)) != len(scope):
        ctx.fail(where, "must not repeat a scope")
    if kind not in ("regex", "bedrockGuardrails") and set(scope) != set(DEFAULT_SCOPE):
        ctx.fail(
            where,
            f"only regex and bedrockGuardrails guards support a non-default scope; {kind} guards always "
            "inspect the default (SystemPrompt + Messages)",
        )
    return tuple(s for s in SCOPES if s in scope)


def _regex(ctx: Ctx, where: str, body: Mapping[str, Any], base: GuardIR) -> GuardIR | None:
    action = body.get("action", "Mask")
    if action not in ("Mask", "Reject"):
        ctx.fail(f"{where}.action", f"must be Mask or Reject, got {action!r}")
    builtins = body.get("builtins") or []
    if not isinstance(builtins, list) or not all(b in BUILTINS for b in builtins):
        ctx.fail(f"{where}.builtins", f"must be a list of {', '.join(BUILTINS)}")
        builtins = []
    matches = body.get("matches") or []
    patterns: list[str] = []
    if not isinstance(matches, list):
        ctx.fail(f"{where}.matches", "must be a list of regular expressions")
        matches = []
    for i, m in enumerate(matches):
        # agentgateway's current type is a list of strings; older manifests wrote {pattern, name}:
        # the pattern is read, a `name` is reported (llmgw masks every custom match as <masked>).
        pattern = m.get("pattern") if isinstance(m, Mapping) else m
        if isinstance(m, Mapping):
            unknown(ctx, f"{where}.matches[{i}]", m, {"pattern"})
        if not isinstance(pattern, str) or not pattern or len(pattern) > 1024:
            ctx.fail(f"{where}.matches[{i}]", "must be a regular expression of 1-1024 characters")
            continue
        import re2  # on the first regex guard: a gateway without one does not map RE2

        try:
            re2.compile(pattern)
        except re2.error as exc:
            ctx.fail(f"{where}.matches[{i}]", f"is not a regular expression RE2 accepts: {_re2_error(exc)}")
            continue
        patterns.append(pattern)
    if not builtins and not patterns and not any(p.field.startswith(f"{where}.matches") for p in ctx.problems):
        ctx.fail(where, "set `builtins` and/or `matches`")
    return GuardIR(
        **{**fields_of(base), "action": str(action), "builtins": tuple(builtins), "patterns": tuple(patterns)}
    )


def _webhook(ctx: Ctx, where: str, body: Mapping[str, Any], base: GuardIR) -> GuardIR | None:
    if "headers" in body:
        ctx.fail(f"{where}.headers", "is not supported by llmgw (CEL-computed webhook headers)", "Unsupported")
    mode = body.get("failureMode", "FailClosed")
    if mode not in ("FailOpen", "FailClosed"):
        ctx.fail(f"{where}.failureMode", f"must be FailOpen or FailClosed, got {mode!r}")
    default_host = ""
    ref = body.get("backendRef")
    if ref is None and "host" not in body:
        ctx.fail(f"{where}.backendRef", "is required (a Service), or set the llmgw extension `host`")
        return None
    if ref is not None:
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref.get("name"):
            ctx.fail(f"{where}.backendRef.name", "is required (a string)")
            return None
        unknown(ctx, f"{where}.backendRef", ref, {"group", "kind", "name", "namespace", "port"})
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            ctx.fail(f"{where}.backendRef.kind", "llmgw calls webhooks by Service (core group) only", "InvalidKind")
            return None
        if "host" in body:
            ctx.fail(f"{where}.host", "set either backendRef or host, not both")
            return None
        port = ref.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            ctx.fail(f"{where}.backendRef.port", "is required for a Service (an integer 1-65535)")
            return None
        namespace = ref.get("namespace") or ctx.res.namespace
        if namespace != ctx.res.namespace:
            ctx.fail(
                f"{where}.backendRef.namespace",
                "llmgw calls guard webhooks in the object's own namespace only (no ReferenceGrant for them)",
                "RefNotPermitted",
            )
            return None
        default_host = f"{ref['name']}.{namespace}.svc.cluster.local"
        body = {**body, "port": port, "host": default_host}
    url, _ = address(ctx, where, body, default_host, tls=False)
    matches: list[StringMatchIR] = []
    forward = body.get("forwardHeaderMatches") or []
    if not isinstance(forward, list):
        ctx.fail(f"{where}.forwardHeaderMatches", "must be a list of HTTP header matches")
        forward = []
    for i, m in enumerate(forward):
        fld = f"{where}.forwardHeaderMatches[{i}]"
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            ctx.fail(fld, "must have `name` and `value` strings")
            continue
        unknown(ctx, fld, m, {"type", "name", "value"})
        mtype = m.get("type", "Exact")
        if mtype not in ("Exact", "RegularExpression"):
            ctx.fail(f"{fld}.type", "must be Exact or RegularExpression")
            continue
        if mtype == "RegularExpression":
            import re2

            try:
                re2.compile(m["value"])
            except re2.error as exc:
                ctx.fail(f"{fld}.value", f"is not a regular expression RE2 accepts: {_re2_error(exc)}")
                continue
        matches.append(StringMatchIR(kind=mtype, name=m["name"].lower(), value=m["value"]))
    return GuardIR(
        **{
            **fields_of(base),
            "url": url,
            "failure_mode": str(mode),
            "timeout_s": guard_timeout(ctx, f"{where}.timeout", body.get("timeout")),
            "forward_headers": tuple(matches),
        }
    )
