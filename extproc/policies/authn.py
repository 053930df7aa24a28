"""API key authentication: the caller's key (from the headers the SDKs send) -> Identity, or a refusal.

Pure core, called by the router stage on the request headers it already
receives (no extra round trip). The presented key is hashed once (SHA-256)
and looked up by digest, then confirmed with `hmac.compare_digest`; the key
itself is never stored, logged or put in an error. Modes (agentgateway's):
Strict needs a valid key; Optional lets a request without a key through as
anonymous but refuses a wrong one; Permissive never refuses.

Compiled lookup tables are cached by policy id, which is a digest of the
policy's content, so a rotated or revoked key (a new config) is a new id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from extproc.contract import ApiKeyPolicyConfig
from extproc.identity import Identity

# Where the SDKs put the key: OpenAI (Authorization: Bearer), Anthropic (x-api-key), Azure OpenAI (api-key).
DEFAULT_HEADERS = ("authorization", "x-api-key", "api-key")
_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Outcome:
    """`refused`: answer 401 with `message`; otherwise `identity` (None: anonymous)."""

    refused: bool
    identity: Identity | None = None
    message: str = ""


@dataclass(frozen=True)
class CompiledPolicy:
    id: str
    mode: str
    header: str | None
    prefix: str
    by_digest: Mapping[str, tuple[str, Identity]]  # digest -> (digest, identity)


_CACHE: dict[str, CompiledPolicy] = {}
_CACHE_MAX = 256


def compile_policy(policy: ApiKeyPolicyConfig) -> CompiledPolicy:
    """The lookup table of a policy, built once per policy id (ids are content digests)."""
    compiled = _CACHE.get(policy.id)
    if compiled is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        compiled = _CACHE[policy.id] = _compile(policy)
    return compiled


def _compile(policy: ApiKeyPolicyConfig) -> CompiledPolicy:
    table: dict[str, tuple[str, Identity]] = {}
    for k in policy.keys:
        ident = Identity(
            source="apikey",
            key_id=k.key_id,
            user=k.user,
            team=k.team,
            tenant=k.tenant,
            labels=tuple(sorted((str(n), str(v)) for n, v in k.labels)),
        )
        table.setdefault(k.sha256, (k.sha256, ident))
    return CompiledPolicy(policy.id, policy.mode, policy.header, policy.prefix, table)


def presented_key(*, headers: Mapping[str, str], header: str | None, prefix: str) -> str | None:
    """The key the client sent, or None: the configured header, else the first SDK header that has one."""
    if header is not None:
        value = headers.get(header)
        if value is None:
            return None
        if prefix:
            if not value.lower().startswith(prefix.lower()):
                return None
            value = value[len(prefix) :]
        return value.strip() or None
    for name in DEFAULT_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "authorization":
            if not value.lower().startswith(_BEARER):
                continue
            value = value[len(_BEARER) :]
        value = value.strip()
        if value:
            return value
    return None


def authenticate(*, policy: CompiledPolicy, headers: Mapping[str, str]) -> Outcome:
    key = presented_key(headers=headers, header=policy.header, prefix=policy.prefix)
    if key is None:
        if policy.mode == "Strict":
            return Outcome(True, message="Missing API key: send it as Authorization: Bearer <key> or x-api-key.")
        return Outcome(False)
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    found = policy.by_digest.get(digest)
    if found is not None and hmac.compare_digest(found[0], digest):
        return Outcome(False, identity=found[1])
    if policy.mode == "Permissive":
        return Outcome(False)
    return Outcome(True, message="Invalid API key.")


def credential_headers(policy: CompiledPolicy) -> tuple[str, ...]:
    """Every header the client's key may be in: removed before the request goes upstream."""
    return DEFAULT_HEADERS if policy.header is None else (*DEFAULT_HEADERS, policy.header)
