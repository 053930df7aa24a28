"""agentgateway `ai` backends (one provider, or priority `groups`) -> an AgentgatewayBackend.

The provider names map one to one (`openAI` -> `openai`, `vertex` -> `vertexai`,
...); `hostOverride: "host:port"`, `pathOverride` and `pathPrefix` become the
provider's `host`/`port`/`path`/`pathPrefix`, the fields backends.py already acts on
for both AI backend kinds. Policies written on the route, on the route's
backend and on the provider itself are merged in that order (the narrower wins).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from controlplane.agwlocal.context import AGW_API, Out, join, string
from controlplane.agwlocal.policies import BACKEND_POLICY_FIELDS, backend_policies

# agentgateway provider -> (llmgw provider kind, the agentgateway fields it keeps)
PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openAI": ("openai", ("model",)),
    "anthropic": ("anthropic", ("model",)),
    "gemini": ("gemini", ("model",)),
    "vertex": ("vertexai", ("model", "region", "projectId")),
    "bedrock": ("bedrock", ("model", "region", "guardrailIdentifier", "guardrailVersion")),
    "azure": ("azure", ("model", "resourceName", "resourceType", "apiVersion", "projectName")),
}
_DNS_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?"
)
AZURE_TYPES = {"openAI": "OpenAI", "foundry": "Foundry"}
_NAMED_FIELDS = ("name", "provider", "hostOverride", "pathOverride", "pathPrefix", "tokenize", "policies")

Policies = tuple[dict[str, Any], dict[str, str]]  # (AgentgatewayBackend policies, policy -> source field)


def provider_settings(out: Out, where: str, kind: str, block: Any) -> dict[str, Any] | None:
    """The settings of one provider kind (`openAI: {model}`) as llmgw's provider-kind block."""
    settings = out.mapping(join(where, kind), block)
    if settings is None:
        return None
    _, fields = PROVIDERS[kind]
    out.unknown(join(where, kind), settings, fields)
    result = {k: v for k, v in settings.items() if k in fields and v is not None}
    if kind == "azure":
        return _azure(out, join(where, kind), result)
    return result


def _azure(out: Out, where: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    rtype = settings.get("resourceType", "openAI")
    if rtype not in AZURE_TYPES:
        if rtype == "aiServices":
            out.unsupported(join(where, "resourceType"), "aiServices endpoints; use openAI or foundry")
        else:
            out.fail(join(where, "resourceType"), f"must be openAI or foundry, got {rtype!r}")
        return None
    settings["resourceType"] = AZURE_TYPES[rtype]
    if rtype == "foundry" and not settings.get("projectName") and settings.get("resourceName"):
        settings["projectName"] = settings["resourceName"]  # agentgateway's default
    return settings


def split_host(out: Out, where: str, value: Any) -> tuple[str, int | None] | None:
    """`hostOverride: "host:port"` (or just a host) -> (host, port)."""
    text = string(out, where, value)
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or host.endswith(":"):
        host, port = text, ""
    host = host.removeprefix("[").removesuffix("]")
    if not _is_host(host) or (port and not 1 <= int(port) <= 65535):
        out.fail(where, f"must be host:port (a DNS name or IP address and a port), got {text!r}")
        return None
    return host, int(port) if port else None


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_DNS_NAME.fullmatch(host))
    return True


def named_provider(
    out: Out, where: str, block: Any, *, secret_name: str
) -> tuple[dict[str, Any], list[tuple[str, str]]] | None:
    """One `LocalNamedAIProvider` -> (AgentgatewayBackend provider block, origin relative to it)."""
    blk = out.mapping(where, block)
    if blk is None:
        return None
    out.unknown(where, blk, (*_NAMED_FIELDS, "routes"))
    if "routes" in blk:  # older docs: a map of path -> completions / messages / passthrough
        out.unsupported(
            join(where, "routes"),
            "llmgw serves the operations it knows for the provider by their path and refuses other paths",
        )
    # Checked first, so that its problems are reported even when the provider is wrong.
    own = out.mapping(join(where, "policies"), blk.get("policies")) or {}
    pol, sources = policies_block(out, join(where, "policies"), own, secret_name=secret_name) if own else ({}, {})
    if blk.get("tokenize") not in (None, False):
        out.unsupported(join(where, "tokenize"))
    name = string(out, join(where, "name"), blk.get("name"))
    prov = out.mapping(join(where, "provider"), blk.get("provider"))
    if name is None or prov is None:
        return None
    kinds = list(prov)
    if len(kinds) != 1 or kinds[0] not in PROVIDERS:
        for k in kinds:
            if k not in PROVIDERS:
                out.unsupported(join(where, f"provider.{k}"))
        if not kinds:
            out.fail(join(where, "provider"), f"set one provider ({', '.join(PROVIDERS)})")
        elif len(kinds) > 1:
            out.fail(join(where, "provider"), f"set exactly one provider; found {kinds}")
        return None
    kind = kinds[0]
    settings = provider_settings(out, join(where, "provider"), kind, prov[kind])
    if settings is None:
        return None
    llmgw_kind = PROVIDERS[kind][0]
    result: dict[str, Any] = {"name": name, llmgw_kind: settings}
    origin = [
        ("", where),
        (llmgw_kind, join(where, f"provider.{kind}")),
        ("host", join(where, "hostOverride")),
        ("port", join(where, "hostOverride")),
    ]
    if blk.get("hostOverride") is not None:
        hp = split_host(out, join(where, "hostOverride"), blk["hostOverride"])
        if hp is None:
            return None
        result["host"] = hp[0]
        if hp[1] is not None:
            result["port"] = hp[1]
    for key, target in (("pathOverride", "path"), ("pathPrefix", "pathPrefix")):
        if blk.get(key) is not None:
            result[target] = blk[key]
            origin.append((target, join(where, key)))
    if pol:
        result["policies"] = pol
        origin += [(f"policies.{k}", v) for k, v in sources.items()]
    return result, origin


def policies_block(out: Out, where: str, block: Mapping[str, Any], *, secret_name: str) -> Policies:
    """A `LocalBackendPolicies` block: the fields llmgw acts on; the others are reported."""
    out.unknown(where, block, BACKEND_POLICY_FIELDS)
    return backend_policies(out, where, block, secret_name=secret_name)


def ai_backend(
    out: Out,
    where: str,
    ai: Any,
    *,
    name: str,
    inherited: list[Policies],
    namespace: str = "default",
) -> str | None:
    """`ai: {...}` -> an AgentgatewayBackend named `name` (made unique); returns its name.

    `inherited`: the route's and the route backend's policies, widest first.
    """
    blk = out.mapping(where, ai)
    if blk is None:
        return None
    name = out.unique("AgentgatewayBackend", name)
    origin: list[tuple[str, str]] = [("", where), ("spec", where)]
    spec_ai: dict[str, Any]
    if "groups" in blk:
        out.unknown(where, blk, ("groups",))
        groups: list[dict[str, Any]] = []
        failed = False
        for gi, group in enumerate(out.items(join(where, "groups"), blk["groups"])):
            gfld = f"{where}.groups[{gi}]"
            g = out.mapping(gfld, group)
            if g is None:
                return None
            out.unknown(gfld, g, ("providers",))
            providers = []
            for pi, raw in enumerate(out.items(join(gfld, "providers"), g.get("providers"))):
                pfld = f"{gfld}.providers[{pi}]"
                got = named_provider(out, pfld, raw, secret_name=f"{name}-{gi}-{pi}")
                if got is None:
                    failed = True
                    continue
                providers.append(got[0])
                target = f"spec.ai.groups[{gi}].providers[{pi}]"
                origin += [(f"{target}.{p}" if p else target, src) for p, src in got[1]]
            groups.append({"providers": providers})
        if failed:
            return None
        spec_ai = {"groups": groups}
    else:
        got = named_provider(out, where, blk, secret_name=name)
        if got is None:
            return None
        spec_ai = {"provider": got[0]}
        origin += [(f"spec.ai.provider.{p}" if p else "spec.ai.provider", src) for p, src in got[1]]
    policies: dict[str, Any] = {}
    for pol, sources in inherited:
        policies.update(pol)
        origin += [(f"spec.policies.{k}", v) for k, v in sources.items()]
    spec: dict[str, Any] = {"ai": spec_ai, **({"policies": policies} if policies else {})}
    out.emit(api_version=AGW_API, kind="AgentgatewayBackend", name=name, body={"spec": spec}, origin=origin,
             namespace=namespace)  # fmt: skip
    return name
