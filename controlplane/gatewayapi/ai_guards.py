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

import re2

from controlplane.gatewayapi.cloud_auth import Ctx, cloud_auth
from controlplane.gatewayapi.routes import parse_duration
from controlplane.ir import AuthIR, GuardIR, PromptGuardIR, StringMatchIR
from controlplane.resources import header_value_problem

BUILTINS = ("Ssn", "CreditCard", "PhoneNumber", "Email", "CaSin")
SCOPES = ("SystemPrompt", "Messages", "ToolInput", "ToolOutput")
DEFAULT_SCOPE = ("SystemPrompt", "Messages")
REQUEST_MESSAGE = "The request was rejected due to inappropriate content"
RESPONSE_MESSAGE = "The response was rejected due to inappropriate content"
DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 4.0  # under Envoy's 5 s ext_proc message timeout
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
_POLICY_FIELDS = {"tcp", "tls", "http", "auth"}
_KIND_FIELDS: dict[str, set[str]] = {
    "regex": {"matches", "builtins", "action"},
    "webhook": {"backendRef", "headers", "forwardHeaderMatches", "failureMode", "timeout"} | _REMOTE_EXTRA,
    "openAIModeration": {"model", "policies"} | _REMOTE_EXTRA,
    "bedrockGuardrails": {"identifier", "version", "region", "policies"} | _REMOTE_EXTRA,
    "googleModelArmor": {"templateId", "projectId", "location", "policies"} | _REMOTE_EXTRA,
    "azureContentSafety": {"endpoint", "analyzeText", "detectJailbreak", "policies"} | _REMOTE_EXTRA,
}
# Public endpoint of each service kind: (host template, port).
_DEFAULT_HOSTS = {
    "openAIModeration": "api.openai.com",
    "bedrockGuardrails": "bedrock-runtime.{region}.amazonaws.com",
    "googleModelArmor": "modelarmor.{location}.rep.googleapis.com",
}
# Which credential kinds each service accepts under policies.auth.
_AUTH_KINDS = {
    "openAIModeration": ("key", "secretRef"),
    "bedrockGuardrails": ("aws", "key", "secretRef"),
    "googleModelArmor": ("gcp",),
    "azureContentSafety": ("azure", "key", "secretRef"),
}


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
    _unknown(ctx, where, block, {"streaming", "request", "response"})
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


def _unknown(ctx: Ctx, where: str, block: Mapping[str, Any], known: set[str]) -> None:
    for key in block:
        if key not in known:
            ctx.fail(f"{where}.{key}", "is not supported by llmgw", "Unsupported")


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
    _unknown(ctx, where, item, {*kinds, "response", *({"scope"} if phase == "request" else set())})
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
    _unknown(ctx, fld, body, _KIND_FIELDS[kind])
    base = GuardIR(kind=kind, message=message, status=status, scope=scope)
    if kind == "regex":
        return _regex(ctx, fld, body, base)
    if kind == "webhook":
        return _webhook(ctx, fld, body, base)
    return _service(ctx, fld, body, base)


def _rejection(ctx: Ctx, where: str, block: Any, *, phase: str) -> tuple[str, int]:
    message = REQUEST_MESSAGE if phase == "request" else RESPONSE_MESSAGE
    if block is None:
        return message, 403
    if not isinstance(block, Mapping) or not block:
        ctx.fail(where, "must be a mapping with `message` and/or `statusCode`")
        return message, 403
    _unknown(ctx, where, block, {"message", "statusCode"})
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
            _unknown(ctx, f"{where}.matches[{i}]", m, {"pattern"})
        if not isinstance(pattern, str) or not pattern or len(pattern) > 1024:
            ctx.fail(f"{where}.matches[{i}]", "must be a regular expression of 1-1024 characters")
            continue
        try:
            re2.compile(pattern)
        except re2.error as exc:
            ctx.fail(f"{where}.matches[{i}]", f"is not a regular expression RE2 accepts: {_re2_error(exc)}")
            continue
        patterns.append(pattern)
    if not builtins and not patterns and not any(p.field.startswith(f"{where}.matches") for p in ctx.problems):
        ctx.fail(where, "set `builtins` and/or `matches`")
    return GuardIR(**{**_fields(base), "action": str(action), "builtins": tuple(builtins), "patterns": tuple(patterns)})


def _fields(guard: GuardIR) -> dict[str, Any]:
    return {k: getattr(guard, k) for k in GuardIR.__dataclass_fields__}


def _timeout(ctx: Ctx, where: str, value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_S
    seconds = parse_duration(value) if isinstance(value, str) else None
    if not seconds:
        ctx.fail(where, f"must be a positive duration such as 2s or 500ms, got {value!r}")
        return DEFAULT_TIMEOUT_S
    if seconds > MAX_TIMEOUT_S:
        ctx.fail(
            where,
            f"cannot be honoured by llmgw: a guard call must end within {MAX_TIMEOUT_S:g}s "
            "(Envoy bounds each ext_proc message to 5 s)",
            "Unsupported",
        )
    return seconds


def _address(ctx: Ctx, where: str, body: Mapping[str, Any], default_host: str, *, tls: bool) -> tuple[str, bool]:
    """(url, tls on) from the default endpoint or the llmgw `host`/`port` extension."""
    host = body.get("host", default_host)
    if not isinstance(host, str) or not host or "/" in host:
        ctx.fail(f"{where}.host", "must be a host name or IP address")
        host = default_host
    tls_on = tls or "host" not in body
    port = body.get("port", 443 if tls_on else 80)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        ctx.fail(f"{where}.port", f"must be an integer 1-65535, got {port!r}")
        port = 443 if tls_on else 80
    scheme = "https" if tls_on else "http"
    bracketed = f"[{host}]" if ":" in host else host
    return f"{scheme}://{bracketed}:{port}", tls_on


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
        _unknown(ctx, f"{where}.backendRef", ref, {"group", "kind", "name", "namespace", "port"})
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
    url, _ = _address(ctx, where, body, default_host, tls=False)
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
        _unknown(ctx, fld, m, {"type", "name", "value"})
        mtype = m.get("type", "Exact")
        if mtype not in ("Exact", "RegularExpression"):
            ctx.fail(f"{fld}.type", "must be Exact or RegularExpression")
            continue
        if mtype == "RegularExpression":
            try:
                re2.compile(m["value"])
            except re2.error as exc:
                ctx.fail(f"{fld}.value", f"is not a regular expression RE2 accepts: {_re2_error(exc)}")
                continue
        matches.append(StringMatchIR(kind=mtype, name=m["name"].lower(), value=m["value"]))
    return GuardIR(
        **{
            **_fields(base),
            "url": url,
            "failure_mode": str(mode),
            "timeout_s": _timeout(ctx, f"{where}.timeout", body.get("timeout")),
            "forward_headers": tuple(matches),
        }
    )


def _text(ctx: Ctx, where: str, body: Mapping[str, Any], key: str, *, required: bool, default: str = "") -> str:
    value = body.get(key, None)
    if value is None:
        if required:
            ctx.fail(f"{where}.{key}", "is required")
        return default
    if not isinstance(value, str) or not value or "/" in value or "?" in value:
        ctx.fail(f"{where}.{key}", "must be a non-empty string without / or ?")
        return default
    return value


def _service(ctx: Ctx, where: str, body: Mapping[str, Any], base: GuardIR) -> GuardIR | None:
    kind = base.kind
    settings: dict[str, str] = {}
    if kind == "openAIModeration":
        settings["model"] = _text(ctx, where, body, "model", required=False, default="omni-moderation-latest")
    elif kind == "bedrockGuardrails":
        settings["identifier"] = _text(ctx, where, body, "identifier", required=True)
        settings["version"] = _text(ctx, where, body, "version", required=True)
        settings["region"] = _text(ctx, where, body, "region", required=True)
    elif kind == "googleModelArmor":
        settings["templateId"] = _text(ctx, where, body, "templateId", required=True)
        settings["projectId"] = _text(ctx, where, body, "projectId", required=True)
        settings["location"] = _text(ctx, where, body, "location", required=False, default="us-central1")
    else:
        settings.update(_azure_settings(ctx, where, body))
    policies = body.get("policies") or {}
    if not isinstance(policies, Mapping):
        ctx.fail(f"{where}.policies", "must be a mapping")
        policies = {}
    _unknown(ctx, f"{where}.policies", policies, _POLICY_FIELDS)
    tls_policy = policies.get("tls")
    verify, sni = True, ""
    if tls_policy is not None:
        if not isinstance(tls_policy, Mapping):
            ctx.fail(f"{where}.policies.tls", "must be a mapping")
            tls_policy = {}
        _unknown(ctx, f"{where}.policies.tls", tls_policy, {"insecureSkipVerify", "sni"})
        skip = tls_policy.get("insecureSkipVerify")
        if skip not in (None, False, "All"):
            ctx.fail(f"{where}.policies.tls.insecureSkipVerify", "llmgw supports All (no verification) here")
        verify = skip in (None, False)
        sni = tls_policy.get("sni", "")
        if not isinstance(sni, str) or "/" in sni:
            ctx.fail(f"{where}.policies.tls.sni", "must be a host name")
            sni = ""
    default_host = settings.pop("host", "") or _DEFAULT_HOSTS.get(kind, "").format(**settings)
    url, _ = _address(ctx, where, body, default_host, tls=tls_policy is not None)
    timeout, connect = DEFAULT_TIMEOUT_S, None
    for policy, fld in (("http", "requestTimeout"), ("tcp", "connectTimeout")):
        block = policies.get(policy)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            ctx.fail(f"{where}.policies.{policy}", f"must be a mapping with `{fld}`")
            continue
        _unknown(ctx, f"{where}.policies.{policy}", block, {fld})
        value = _timeout(ctx, f"{where}.policies.{policy}.{fld}", block.get(fld))
        if policy == "http":
            timeout = value
        elif fld in block:
            connect = value
    auth = _auth(ctx, f"{where}.policies.auth", policies.get("auth"), kind, settings)
    return GuardIR(
        **{
            **_fields(base),
            "url": url,
            "verify_tls": verify,
            "sni": sni,
            "timeout_s": timeout,
            "connect_timeout_s": connect,
            "settings": tuple(sorted(settings.items())),
            "auth": auth,
        }
    )


def _azure_settings(ctx: Ctx, where: str, body: Mapping[str, Any]) -> dict[str, str]:
    settings: dict[str, str] = {}
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip("/"):
        ctx.fail(f"{where}.endpoint", "is required (the resource's host, e.g. NAME.cognitiveservices.azure.com)")
    else:
        settings["host"] = endpoint.removeprefix("https://").removeprefix("http://").strip("/")
    analyze, jailbreak = body.get("analyzeText"), body.get("detectJailbreak")
    if analyze is None and jailbreak is None:
        ctx.fail(where, "set `analyzeText` and/or `detectJailbreak`")
    if analyze is not None:
        if not isinstance(analyze, Mapping):
            ctx.fail(f"{where}.analyzeText", "must be a mapping")
            analyze = {}
        fld = f"{where}.analyzeText"
        _unknown(ctx, fld, analyze, {"severityThreshold", "apiVersion", "blocklistNames", "haltOnBlocklistHit"})
        threshold = analyze.get("severityThreshold", 2)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= 7:
            ctx.fail(f"{fld}.severityThreshold", "must be an integer 0-7")
            threshold = 2
        settings["analyzeText"] = "1"
        settings["severityThreshold"] = str(threshold)
        settings["analyzeApiVersion"] = _text(ctx, fld, analyze, "apiVersion", required=False, default="2024-09-01")
        names = analyze.get("blocklistNames") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n and "," not in n for n in names):
            ctx.fail(f"{fld}.blocklistNames", "must be a list of blocklist names")
            names = []
        if names:
            settings["blocklistNames"] = ",".join(names)
        halt = analyze.get("haltOnBlocklistHit")
        if halt is not None and not isinstance(halt, bool):
            ctx.fail(f"{fld}.haltOnBlocklistHit", "must be true or false")
        elif halt is not None:
            settings["haltOnBlocklistHit"] = "true" if halt else "false"
    if jailbreak is not None:
        if not isinstance(jailbreak, Mapping):
            ctx.fail(f"{where}.detectJailbreak", "must be a mapping")
            jailbreak = {}
        fld = f"{where}.detectJailbreak"
        _unknown(ctx, fld, jailbreak, {"apiVersion"})
        settings["detectJailbreak"] = "1"
        settings["jailbreakApiVersion"] = _text(
            ctx, fld, jailbreak, "apiVersion", required=False, default="2024-02-15-preview"
        )
    return settings


def _auth(ctx: Ctx, where: str, block: Any, kind: str, settings: Mapping[str, str]) -> AuthIR | None:
    allowed = _AUTH_KINDS[kind]
    if block is None:
        ambient = {"bedrockGuardrails": "aws", "googleModelArmor": "gcp", "azureContentSafety": "azure"}.get(kind)
        if ambient is None:
            ctx.fail(where, "is required: the OpenAI moderation API needs a key (`key` or `secretRef`)")
            return None
        return cloud_auth(ctx, f"{where}.{ambient}", ambient, {}, settings)
    if not isinstance(block, Mapping):
        ctx.fail(where, "must be a mapping")
        return None
    _unknown(ctx, where, block, {*allowed, "location"})
    chosen = [k for k in allowed if k in block]
    if len(chosen) != 1:
        ctx.fail(where, f"set exactly one of {', '.join(allowed)}")
        return None
    method = chosen[0]
    if method in ("aws", "gcp", "azure"):
        if "location" in block:
            ctx.fail(f"{where}.location", "may only be set with `key` or `secretRef`")
        return cloud_auth(ctx, f"{where}.{method}", method, block[method], settings)
    # Azure AI services take a resource key in their own header.
    default = ("ocp-apim-subscription-key", "") if kind == "azureContentSafety" else ("authorization", "Bearer ")
    header, prefix = _location(ctx, f"{where}.location", block.get("location"), default)
    if method == "key":
        key = block["key"]
        if not isinstance(key, str) or not key.strip():
            ctx.fail(f"{where}.key", "must be a non-empty string")
            return None
        value, source = key.strip(), "inline key"
    else:
        ref = block["secretRef"]
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref.get("name"):
            ctx.fail(f"{where}.secretRef.name", "is required")
            return None
        _unknown(ctx, f"{where}.secretRef", ref, {"name", "key"})
        secret = f"{ctx.res.namespace}/{ref['name']}"
        data = ctx.secrets.get(secret)
        item = str(ref.get("key") or "Authorization")
        found = data.get(item) if data is not None else None
        if found is None or not found.strip():
            ctx.fail(f"{where}.secretRef", f"Secret {secret} has no non-empty key {item!r}", "BackendNotFound")
            return None
        value, source = found.strip(), f"secret {secret}"
        if "key" not in ref and value.lower().startswith("bearer "):
            value = value[7:].strip()  # agentgateway strips `Bearer ` from the default key only
    if bad := header_value_problem(value):
        ctx.fail(where, f"cannot be sent as an HTTP header: it {bad}")
        return None
    return AuthIR(header=header, prefix=prefix, value=value, source=source)


def _location(ctx: Ctx, where: str, block: Any, default: tuple[str, str]) -> tuple[str, str]:
    if block is None:
        return default
    header = block.get("header") if isinstance(block, Mapping) else None
    if not isinstance(header, Mapping) or not isinstance(header.get("name", ""), str):
        ctx.fail(f"{where}.header", "must be a mapping with `name` (and optional `prefix`)")
        return "authorization", "Bearer "
    name = str(header.get("name") or "authorization").lower()
    prefix = header.get("prefix", "Bearer " if name == "authorization" else "")
    return name, str(prefix or "")
