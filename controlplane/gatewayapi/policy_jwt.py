"""`traffic.jwtAuthentication` -> JwtAuthIR (Envoy's jwt_authn enforces it: controlplane/xds/jwt_authn.py).

agentgateway's shape: `mode` (Strict | Optional | Permissive), `providers[]`
{issuer, audiences, jwks: {inline} | {remote: {url, cacheDuration}}},
optional `location.header`. A remote JWKS by `backendRef`, other locations and
`mcp` are reported as not supported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from controlplane.gatewayapi.filters import header_name_problem
from controlplane.gatewayapi.routes import parse_duration
from controlplane.ir import JwtAuthIR, JwtProviderIR
from controlplane.resources import Problem, Resource

MODES = ("Strict", "Optional", "Permissive")
_FIELDS = {"mode", "providers", "location", "mcp"}
_PROVIDER_FIELDS = {"issuer", "audiences", "jwks"}


def policy_id(auth: JwtAuthIR) -> str:
    """A digest of the policy's content (jwt_authn requirement and provider names are built from it)."""
    doc: list[object] = [auth.mode, auth.header, auth.prefix, auth.source]
    doc += [[p.issuer, list(p.audiences), p.jwks_inline, p.jwks_uri, p.cache_duration_s] for p in auth.providers]
    return hashlib.sha256(orjson.dumps(doc)).hexdigest()[:16]


def provider_names(auth: JwtAuthIR) -> list[str]:
    """The jwt_authn provider names of a policy (also the metadata keys of their payloads).

    Named by content (issuer, audiences, keys), so two policies trusting the same issuer the
    same way share one provider: jwt_authn records a token's payload under the provider that
    validated it, and the router stage must find it whichever policy's route is final.
    """
    names = []
    for p in auth.providers:
        doc = [p.issuer, list(p.audiences), p.jwks_inline, p.jwks_uri, p.cache_duration_s, auth.header, auth.prefix]
        names.append("p-" + hashlib.sha256(orjson.dumps(doc)).hexdigest()[:16])
    return names


def parse_jwt_authentication(
    raw: Any, *, policy: Resource, fld: str, secrets: Mapping[str, Mapping[str, str]]
) -> tuple[JwtAuthIR | None, list[Problem]]:
    del secrets  # agentgateway's JWKS come inline or remote, never from a Secret
    problems: list[Problem] = []

    def fail(at: str, message: str, reason: str = "Invalid") -> None:
        problems.append(Problem(policy.file, policy.ref, at, message, reason))

    def closed() -> tuple[JwtAuthIR, list[Problem]]:
        """A policy that cannot be read accepts no token (fail closed): its routes refuse callers until fixed."""
        problems.append(
            Problem(policy.file, policy.ref, fld, "accepts no token until this is fixed (requests are refused)")
        )
        return JwtAuthIR(mode="Strict", providers=(), source=policy.ref), problems

    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping")
        return closed()
    for key in raw:
        if key == "mcp":
            fail(f"{fld}.mcp", "is not supported by llmgw", "Unsupported")
        elif key not in _FIELDS:
            fail(f"{fld}.{key}", "is not a field of jwtAuthentication")
    mode = raw.get("mode", "Strict")
    if mode not in MODES:
        fail(f"{fld}.mode", f"must be one of {', '.join(MODES)}, not {mode!r}")
        return closed()
    header, prefix = "authorization", "Bearer "
    location = raw.get("location")
    if location is not None:
        hdr = location.get("header") if isinstance(location, Mapping) else None
        if not isinstance(location, Mapping) or set(location) != {"header"} or not isinstance(hdr, Mapping):
            fail(f"{fld}.location", "only location.header is supported by llmgw", "Unsupported")
        elif why := header_name_problem(hdr.get("name")):
            fail(f"{fld}.location.header.name", why)
        else:
            header, prefix = str(hdr["name"]).lower(), str(hdr.get("prefix", ""))
    items = raw.get("providers")
    if not isinstance(items, list) or not items:
        fail(f"{fld}.providers", "needs at least one provider")
        return closed()
    providers = [p for i, item in enumerate(items) if (p := _provider(item, f"{fld}.providers[{i}]", fail))]
    if len(providers) != len(items):
        return closed()  # a provider we cannot check would make valid tokens fail or pass wrongly
    issuers = [p.issuer for p in providers]
    if len(set(issuers)) != len(issuers):
        fail(f"{fld}.providers", "two providers have the same issuer")
        return closed()
    return JwtAuthIR(mode=mode, providers=tuple(providers), header=header, prefix=prefix, source=policy.ref), problems


def _provider(raw: Any, fld: str, fail: Any) -> JwtProviderIR | None:
    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping (issuer, audiences, jwks)")
        return None
    for key in raw:
        if key not in _PROVIDER_FIELDS:
            fail(f"{fld}.{key}", "is not a field of a JWT provider")
    issuer = raw.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        fail(f"{fld}.issuer", "is required (a string)")
        return None
    audiences = raw.get("audiences", [])
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        fail(f"{fld}.audiences", "must be a list of strings")
        return None
    jwks = raw.get("jwks")
    if not isinstance(jwks, Mapping) or (jwks.get("inline") is None) == (jwks.get("remote") is None):
        fail(f"{fld}.jwks", "needs exactly one of inline and remote")
        return None
    if jwks.get("inline") is not None:
        inline = jwks["inline"]
        try:
            doc = orjson.loads(inline) if isinstance(inline, str) else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            fail(f"{fld}.jwks.inline", "must be a JSON Web Key Set (a JSON object with keys)")
            return None
        return JwtProviderIR(issuer=issuer, audiences=tuple(audiences), jwks_inline=inline)
    remote = jwks["remote"]
    if not isinstance(remote, Mapping):
        fail(f"{fld}.jwks.remote", "must be a mapping")
        return None
    if remote.get("backendRef") is not None:
        fail(f"{fld}.jwks.remote.backendRef", "is not supported by llmgw (use url)", "Unsupported")
        return None
    for key in set(remote) - {"url", "cacheDuration", "backendRef"}:
        fail(f"{fld}.jwks.remote.{key}", "is not supported by llmgw", "Unsupported")
    url = remote.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"{fld}.jwks.remote.url", "must be an http:// or https:// URL")
        return None
    cache = 300.0
    if remote.get("cacheDuration") is not None:
        parsed = parse_duration(remote["cacheDuration"]) if isinstance(remote["cacheDuration"], str) else None
        if parsed is None:
            fail(f"{fld}.jwks.remote.cacheDuration", "must be a duration (e.g. 5m)")
        else:
            cache = parsed
    return JwtProviderIR(issuer=issuer, audiences=tuple(audiences), jwks_uri=url, cache_duration_s=cache)
