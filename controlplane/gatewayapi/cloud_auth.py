"""`policies.auth` for cloud credentials: aws, gcp and azure blocks -> AuthIR(kind, params).

Secret fields are resolved here (the only place they are read) into
`params`, which travel to the extproc over the config channel and never into
Envoy config. An empty block means the provider's ambient/default chain.

`azure` also accepts agentgateway's standalone-config names, which map one to one:
`explicitConfig.clientSecret` {tenantId, clientId, clientSecret} (inline values),
`explicitConfig.managedIdentity` {} or {userAssignedIdentity: {clientId|objectId|resourceId}},
`explicitConfig.workloadIdentity` {}, and `implicit` {} (the default chain).
`developerImplicit` (Azure CLI / azd) is refused: a gateway has no developer login.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controlplane.ir import AuthIR
from controlplane.resources import Problem, Resource, header_value_problem


class Ctx(Protocol):
    res: Resource
    secrets: Mapping[str, Mapping[str, str]]
    problems: list[Problem]

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None: ...


# Secret key -> params key, per credential kind; (required keys, optional keys).
_SECRET_FIELDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "aws": ({"accessKey": "access_key_id", "secretKey": "secret_access_key"}, {"sessionToken": "session_token"}),
    "gcp": ({"credentials.json": "credentials_json"}, {}),
    "azure": ({"clientID": "client_id", "tenantID": "tenant_id", "clientSecret": "client_secret"}, {}),
}
_MANAGED_IDENTITY_IDS = {"clientId": "client_id", "objectId": "object_id", "resourceId": "resource_id"}


def region_params(settings: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return (("region", settings["region"]),) if settings.get("region") else ()


def cloud_auth(ctx: Ctx, fld: str, kind: str, block: Any, settings: Mapping[str, str]) -> AuthIR | None:
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        ctx.fail(fld, "must be a mapping")
        return None
    params: dict[str, str] = dict(region_params(settings))
    if kind == "aws" and block.get("region"):
        params["region"] = str(block["region"])
    source = f"default {kind} credential chain"
    if kind == "azure":
        mode, azure_params, azure_source = _azure_mode(ctx, fld, block)
        if mode is None:
            return None
        params.update(azure_params)
        params["mode"] = mode
        source = azure_source
    if "secretRef" in block:
        secret = _secret_fields(ctx, f"{fld}.secretRef", kind, block["secretRef"])
        if secret is None:
            return None
        params.update(secret)
        source = f"secret {ctx.res.namespace}/{block['secretRef']['name']}"
    return AuthIR(header="", prefix="", value="", source=source, kind=kind, params=tuple(sorted(params.items())))


_AGW_AZURE = ("explicitConfig", "implicit", "developerImplicit")
_AGW_EXPLICIT = ("clientSecret", "managedIdentity", "workloadIdentity")
_AGW_CLIENT_SECRET = {"tenantId": "tenant_id", "clientId": "client_id", "clientSecret": "client_secret"}


def _azure_mode(ctx: Ctx, fld: str, block: Mapping[str, Any]) -> tuple[str | None, dict[str, str], str]:
    if any(k in block for k in _AGW_AZURE):
        return _agentgateway_azure(ctx, fld, block)
    modes = [m for m in ("secretRef", "managedIdentity", "workloadIdentity") if m in block]
    if len(modes) > 1:
        ctx.fail(fld, f"set at most one of secretRef, managedIdentity, workloadIdentity; found {modes}")
        return None, {}, ""
    if not modes:
        return "default", {}, "Azure default credential chain"
    mode = modes[0]
    if mode == "secretRef":
        return "client_secret", {}, "Azure client secret"
    if mode == "workloadIdentity":
        return "workload_identity", {}, "Azure workload identity"
    ids = block.get("managedIdentity") or {}
    if not isinstance(ids, Mapping):
        ctx.fail(f"{fld}.managedIdentity", "must be a mapping")
        return None, {}, ""
    given = [k for k in _MANAGED_IDENTITY_IDS if ids.get(k)]
    if len(given) > 1:
        ctx.fail(f"{fld}.managedIdentity", f"set at most one of clientId, objectId, resourceId; found {given}")
        return None, {}, ""
    if not given:
        return "managed_identity", {}, "Azure system-assigned managed identity"
    key = given[0]
    return "managed_identity", {_MANAGED_IDENTITY_IDS[key]: str(ids[key])}, f"Azure managed identity ({key})"


def _agentgateway_azure(ctx: Ctx, fld: str, block: Mapping[str, Any]) -> tuple[str | None, dict[str, str], str]:
    """agentgateway's standalone `backendAuth.azure` names -> (mode, params, source)."""
    given = [k for k in (*_AGW_AZURE, "secretRef", "managedIdentity", "workloadIdentity") if k in block]
    if len(given) > 1:
        ctx.fail(
            fld,
            f"set exactly one of explicitConfig, implicit, secretRef, managedIdentity, workloadIdentity; found {given}",
        )
        return None, {}, ""
    if "developerImplicit" in block:
        ctx.fail(
            f"{fld}.developerImplicit",
            "developer credentials (Azure CLI, azd) are not supported by the gateway; use implicit: {} "
            "(environment, workload identity, managed identity) or explicitConfig",
            "Unsupported",
        )
        return None, {}, ""
    if "implicit" in block:
        if not isinstance(block["implicit"] or {}, Mapping):
            ctx.fail(f"{fld}.implicit", "must be a mapping")
            return None, {}, ""
        return "default", {}, "Azure default credential chain"
    explicit = block["explicitConfig"]
    efld = f"{fld}.explicitConfig"
    if not isinstance(explicit, Mapping):
        ctx.fail(efld, "must be a mapping")
        return None, {}, ""
    sources = [k for k in _AGW_EXPLICIT if k in explicit]
    if len(sources) != 1:
        ctx.fail(efld, f"set exactly one of clientSecret, managedIdentity, workloadIdentity; found {sources}")
        return None, {}, ""
    source = sources[0]
    value = explicit[source] or {}
    if not isinstance(value, Mapping):
        ctx.fail(f"{efld}.{source}", "must be a mapping")
        return None, {}, ""
    if source == "workloadIdentity":
        return "workload_identity", {}, "Azure workload identity"
    if source == "clientSecret":
        missing = [k for k in _AGW_CLIENT_SECRET if not isinstance(value.get(k), str) or not value[k].strip()]
        if missing:
            ctx.fail(f"{efld}.clientSecret", f"{', '.join(missing)}: required, a non-empty string")
            return None, {}, ""
        params = {param: str(value[k]).strip() for k, param in _AGW_CLIENT_SECRET.items()}
        return "client_secret", params, "inline client secret"
    user = value.get("userAssignedIdentity")
    if user is None:
        return "managed_identity", {}, "Azure system-assigned managed identity"
    ufld = f"{efld}.managedIdentity.userAssignedIdentity"
    ids = [k for k in _MANAGED_IDENTITY_IDS if isinstance(user, Mapping) and k in user]
    if not isinstance(user, Mapping) or len(ids) != 1 or not isinstance(user[ids[0]], str) or not user[ids[0]]:
        ctx.fail(ufld, "set exactly one of clientId, objectId, resourceId (a non-empty string)")
        return None, {}, ""
    key = ids[0]
    return "managed_identity", {_MANAGED_IDENTITY_IDS[key]: user[key]}, f"Azure managed identity ({key})"


def _secret_fields(ctx: Ctx, fld: str, kind: str, ref: Any) -> dict[str, str] | None:
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref.get("name"):
        ctx.fail(f"{fld}.name", "is required")
        return None
    key = f"{ctx.res.namespace}/{ref['name']}"
    data = ctx.secrets.get(key)
    if data is None:
        ctx.fail(fld, f"Secret {key} not found", "BackendNotFound")
        return None
    required, optional = _SECRET_FIELDS[kind]
    out: dict[str, str] = {}
    missing = [k for k in required if not (data.get(k) or "").strip()]
    if missing:
        ctx.fail(fld, f"Secret {key} has no (or an empty) key {', '.join(missing)}", "BackendNotFound")
        return None
    for secret_key, param in {**required, **optional}.items():
        value = (data.get(secret_key) or "").strip()
        # AWS keys travel in (or are signed into) request headers: a line break inside fails every request.
        if value and kind == "aws" and (bad := header_value_problem(value)):
            ctx.fail(fld, f"Secret {key} key {secret_key!r} cannot be used in an HTTP header: it {bad}")
            return None
        if value:
            out[param] = value
    return out
