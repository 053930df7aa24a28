"""`traffic.apiKeyAuthentication` -> ApiKeyAuthIR: the accepted keys as SHA-256 digests with their owners.

agentgateway's shape: `mode` (Strict | Optional | Permissive), exactly one of
`secretRef` {name}, `secretSelector` {matchLabels}, `configMapSelector`
{matchLabels} (same namespace as the policy), optional `location`. Each entry
of the Secret/ConfigMap is one key: its name is the key id; its value is the
key itself, or JSON {"key" | "keyHash": "sha256:<hex>", "metadata": {...}}.
ConfigMaps are not confidential, so their entries must use `keyHash`.

Keys are hashed here and only the digest goes on (to the extproc, never to
Envoy). `metadata.user`, `.team` and `.tenant` become the identity's fields,
other scalar metadata its labels. No message ever quotes a value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from controlplane.gatewayapi.filters import header_name_problem
from controlplane.ir import ApiKeyAuthIR, ApiKeyIR
from controlplane.resources import Problem, Resource

MODES = ("Strict", "Optional", "Permissive")
_FIELDS = {"mode", "secretRef", "secretSelector", "configMapSelector", "location"}
_SOURCES = ("secretRef", "secretSelector", "configMapSelector")
_HASH = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
IDENTITY_FIELDS = ("user", "team", "tenant")


def key_digest(key: str) -> str:
    """The SHA-256 hex digest a presented key is looked up by (the extproc hashes the same way)."""
    return hashlib.sha256(key.encode()).hexdigest()


def policy_id(auth: ApiKeyAuthIR) -> str:
    """A digest of the policy's content: the Envoy route name carries it, the extproc finds the keys by it.

    Any change (a rotated or revoked key, another mode) is a new id, so nothing stale is looked up.
    """
    doc: list[object] = [auth.mode, auth.header, auth.prefix, auth.source]
    doc += [[k.key_id, k.sha256, k.user, k.team, k.tenant, list(k.labels)] for k in auth.keys]
    return hashlib.sha256(orjson.dumps(doc)).hexdigest()[:16]


def parse_api_key_authentication(
    raw: Any,
    *,
    policy: Resource,
    fld: str,
    secrets: Mapping[str, Mapping[str, str]],
    secret_resources: Sequence[Resource],
    configmaps: Mapping[str, Mapping[str, str]],
    configmap_resources: Sequence[Resource],
) -> tuple[ApiKeyAuthIR | None, list[Problem]]:
    problems: list[Problem] = []

    def fail(at: str, message: str, reason: str = "Invalid") -> None:
        problems.append(Problem(policy.file, policy.ref, at, message, reason))

    def closed(mode: str = "Strict") -> tuple[ApiKeyAuthIR, list[Problem]]:
        """A policy that cannot be read accepts no key (fail closed): its routes refuse callers until fixed."""
        problems.append(
            Problem(policy.file, policy.ref, fld, "accepts no API key until this is fixed (requests are refused)")
        )
        return ApiKeyAuthIR(mode=mode, keys=(), source=policy.ref), problems

    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping")
        return closed()
    for key in raw:
        if key not in _FIELDS:
            fail(f"{fld}.{key}", "is not a field of apiKeyAuthentication")
    mode = raw.get("mode", "Strict")
    if mode not in MODES:
        fail(f"{fld}.mode", f"must be one of {', '.join(MODES)}, not {mode!r}")
        return closed()
    given = [s for s in _SOURCES if raw.get(s) is not None]
    if len(given) != 1:
        fail(fld, "needs exactly one of secretRef, secretSelector, configMapSelector")
        return closed(mode)
    header, prefix = _location(raw.get("location"), f"{fld}.location", fail)
    ns = policy.namespace
    entries: list[tuple[str, str, bool]] = []  # (object key, entry name, confidential)
    source = given[0]
    if source == "secretRef":
        ref = raw["secretRef"]
        name = ref.get("name") if isinstance(ref, Mapping) else None
        if not isinstance(name, str) or not name:
            fail(f"{fld}.secretRef.name", "is required (a string)")
            return closed(mode)
        if ref.get("group", "") not in ("", "core") or ref.get("kind", "Secret") not in ("", "Secret"):
            fail(f"{fld}.secretRef.kind", "only core Secrets are supported by llmgw", "Unsupported")
            return closed(mode)
        if f"{ns}/{name}" not in secrets:
            fail(f"{fld}.secretRef", f"Secret {ns}/{name} not found", "BackendNotFound")
            return closed(mode)
        entries = [(f"{ns}/{name}", e, True) for e in sorted(secrets[f"{ns}/{name}"])]
    else:
        selector = raw[source]
        labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
        if not isinstance(labels, Mapping) or not labels:
            fail(f"{fld}.{source}.matchLabels", "is required (a non-empty mapping of label to value)")
            return closed(mode)
        confidential = source == "secretSelector"
        objects, data = (secret_resources, secrets) if confidential else (configmap_resources, configmaps)
        for obj in sorted(objects, key=lambda o: o.name):
            if obj.namespace == ns and all(obj.labels.get(k) == v for k, v in labels.items()):
                entries.extend((obj.key, e, confidential) for e in sorted(data.get(obj.key, {})))
    keys: list[ApiKeyIR] = []
    seen: dict[str, str] = {}
    for obj_key, entry, confidential in entries:
        data = secrets if confidential else configmaps
        key = _entry(obj_key, entry, data[obj_key][entry], confidential=confidential, fld=fld, fail=fail)
        if key is None:
            continue
        if key.sha256 in seen:
            fail(fld, f"entry {key.key_id} holds the same key as {seen[key.sha256]}; only that one is used")
            continue
        seen[key.sha256] = key.key_id
        keys.append(key)
    return ApiKeyAuthIR(mode=mode, keys=tuple(keys), header=header, prefix=prefix, source=policy.ref), problems


def _location(raw: Any, fld: str, fail: Any) -> tuple[str | None, str]:
    """`location.header` {name, prefix}; None: the headers the SDKs send (see extproc/policies/authn.py)."""
    if raw is None:
        return None, ""
    if not isinstance(raw, Mapping):
        fail(fld, "must be a mapping")
        return None, ""
    for key in raw:
        if key in ("queryParameter", "cookie", "expression"):
            fail(f"{fld}.{key}", "is not supported by llmgw (use header)", "Unsupported")
        elif key != "header":
            fail(f"{fld}.{key}", "is not a field of location")
    header = raw.get("header")
    if header is None:
        return None, ""
    name = header.get("name") if isinstance(header, Mapping) else None
    if why := header_name_problem(name):
        fail(f"{fld}.header.name", why)
        return None, ""
    assert isinstance(header, Mapping)
    prefix = header.get("prefix", "")
    if not isinstance(prefix, str):
        fail(f"{fld}.header.prefix", "must be a string")
        prefix = ""
    return str(name).lower(), prefix


def _entry(obj_key: str, entry: str, value: str, *, confidential: bool, fld: str, fail: Any) -> ApiKeyIR | None:
    """One entry -> ApiKeyIR; messages name the object and entry, never the value."""
    key_id = f"{obj_key}/{entry}"
    text = value.strip()
    doc: Any = None
    if text.startswith("{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            fail(fld, f"entry {key_id} starts like JSON but is not valid JSON")
            return None
    if doc is None:
        if not confidential:
            fail(fld, f"entry {key_id}: a ConfigMap may only hold keyHash entries (JSON), not keys")
            return None
        if not text:
            fail(fld, f"entry {key_id} is empty")
            return None
        return ApiKeyIR(key_id=key_id, sha256=key_digest(text))
    if not isinstance(doc, dict):
        fail(fld, f"entry {key_id} must be a key or a JSON object")
        return None
    raw_key, raw_hash = doc.get("key"), doc.get("keyHash")
    if (raw_key is None) == (raw_hash is None):
        fail(fld, f"entry {key_id} needs exactly one of key and keyHash")
        return None
    if raw_key is not None:
        if not confidential:
            fail(fld, f"entry {key_id}: a ConfigMap may only hold keyHash entries, not keys")
            return None
        if not isinstance(raw_key, str) or not raw_key:
            fail(fld, f"entry {key_id}: key must be a non-empty string")
            return None
        digest = key_digest(raw_key)
    else:
        m = _HASH.match(raw_hash) if isinstance(raw_hash, str) else None
        if m is None:
            fail(fld, f"entry {key_id}: keyHash must be sha256:<64 hex digits>")
            return None
        digest = m.group(1).lower()
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict):
        fail(fld, f"entry {key_id}: metadata must be a JSON object")
        meta = {}
    for extra in set(doc) - {"key", "keyHash", "metadata"}:
        fail(fld, f"entry {key_id}: {extra!r} is not a field of an API key entry")
    ident: dict[str, str | None] = dict.fromkeys(IDENTITY_FIELDS)
    labels: list[tuple[str, str]] = []
    for name, v in sorted(meta.items()):
        if isinstance(v, bool):
            text_value = "true" if v else "false"
        elif isinstance(v, str | int | float):
            text_value = str(v)
        else:
            fail(fld, f"entry {key_id}: metadata.{name} is not a string, number or boolean; ignored", "Unsupported")
            continue
        if name in ident:
            ident[name] = text_value
        else:
            labels.append((name, text_value))
    return ApiKeyIR(
        key_id=key_id,
        sha256=digest,
        user=ident["user"],
        team=ident["team"],
        tenant=ident["tenant"],
        labels=tuple(labels),
    )
