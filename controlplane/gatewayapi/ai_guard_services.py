"""Shared readers of `promptGuard` (ai_guards.py): remote guard services, their endpoints and credentials.

`openAIModeration`, `bedrockGuardrails`, `googleModelArmor` and `azureContentSafety` each have
the service's own fields, a public endpoint (or the llmgw `host`/`port` extension) and
`policies` (agentgateway's `BackendConnectionPolicy`: `auth`, `tls`, `http.requestTimeout`,
`tcp.connectTimeout`). Credentials resolve here into `AuthIR` (secrets never leave it but
through the config channel); cloud kinds go through `cloud_auth` as for providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.gatewayapi.cloud_auth import Ctx, cloud_auth
from controlplane.gatewayapi.routes import parse_duration
from controlplane.ir import AuthIR, GuardIR
from controlplane.resources import header_value_problem

DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 4.0  # under Envoy's 5 s ext_proc message timeout
_POLICY_FIELDS = {"tcp", "tls", "http", "auth"}
_DEFAULT_HOSTS = {
    "openAIModeration": "api.openai.com",
    "bedrockGuardrails": "bedrock-runtime.{region}.amazonaws.com",
    "googleModelArmor": "modelarmor.{location}.rep.googleapis.com",
}
_AUTH_KINDS = {
    "openAIModeration": ("key", "secretRef"),
    "bedrockGuardrails": ("aws", "key", "secretRef"),
    "googleModelArmor": ("gcp",),
    "azureContentSafety": ("azure", "key", "secretRef"),
}


def unknown(ctx: Ctx, where: str, block: Mapping[str, Any], known: set[str]) -> None:
    """A problem for each field of `block` llmgw does not act on."""
    for key in block:
        if key not in known:
            ctx.fail(f"{where}.{key}", "is not supported by llmgw", "Unsupported")


def fields_of(guard: GuardIR) -> dict[str, Any]:
    """A guard's fields, to build a copy with some of them set."""
    return {k: getattr(guard, k) for k in GuardIR.__dataclass_fields__}


def guard_timeout(ctx: Ctx, where: str, value: Any) -> float:
    """A guard call's duration in seconds (default 3 s); above 4 s is reported, Envoy would cut it."""
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


def address(ctx: Ctx, where: str, body: Mapping[str, Any], default_host: str, *, tls: bool) -> tuple[str, bool]:
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


def service(ctx: Ctx, where: str, body: Mapping[str, Any], base: GuardIR) -> GuardIR | None:
    """A cloud guard (`base.kind`): its settings, endpoint, TLS, timeouts and credential."""
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
    unknown(ctx, f"{where}.policies", policies, _POLICY_FIELDS)
    tls_policy = policies.get("tls")
    verify, sni = True, ""
    if tls_policy is not None:
        if not isinstance(tls_policy, Mapping):
            ctx.fail(f"{where}.policies.tls", "must be a mapping")
            tls_policy = {}
        unknown(ctx, f"{where}.policies.tls", tls_policy, {"insecureSkipVerify", "sni"})
        skip = tls_policy.get("insecureSkipVerify")
        if skip not in (None, False, "All"):
            ctx.fail(f"{where}.policies.tls.insecureSkipVerify", "llmgw supports All (no verification) here")
        verify = skip in (None, False)
        sni = tls_policy.get("sni", "")
        if not isinstance(sni, str) or "/" in sni:
            ctx.fail(f"{where}.policies.tls.sni", "must be a host name")
            sni = ""
    default_host = settings.pop("host", "") or _DEFAULT_HOSTS.get(kind, "").format(**settings)
    url, _ = address(ctx, where, body, default_host, tls=tls_policy is not None)
    timeout, connect = DEFAULT_TIMEOUT_S, None
    for policy, fld in (("http", "requestTimeout"), ("tcp", "connectTimeout")):
        block = policies.get(policy)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            ctx.fail(f"{where}.policies.{policy}", f"must be a mapping with `{fld}`")
            continue
        unknown(ctx, f"{where}.policies.{policy}", block, {fld})
        value = guard_timeout(ctx, f"{where}.policies.{policy}.{fld}", block.get(fld))
        if policy == "http":
            timeout = value
        elif fld in block:
            connect = value
    auth = _auth(ctx, f"{where}.policies.auth", policies.get("auth"), kind, settings)
    return GuardIR(
        **{
            **fields_of(base),
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
        unknown(ctx, fld, analyze, {"severityThreshold", "apiVersion", "blocklistNames", "haltOnBlocklistHit"})
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
        unknown(ctx, fld, jailbreak, {"apiVersion"})
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
    unknown(ctx, where, block, {*allowed, "location"})
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
        unknown(ctx, f"{where}.secretRef", ref, {"name", "key"})
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
