"""agentgateway backend policies (`backendAuth`, `backendTLS`, `http`, `tcp`) -> AgentgatewayBackend policies.

The result is the `policies` block an `AgentgatewayBackend` carries (`auth`,
`tls`, `http.requestTimeout`, `tcp.connectTimeout`), so the credential, TLS and
timeout code is the one the Kubernetes kinds use. Credentials written inline
(`key: sk-...`, an Azure client secret, AWS keys) become generated Secrets:
they reach the extproc over the config channel, never Envoy's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.agwlocal.context import Out, join, string

# LocalBackendPolicies fields this module reads; the rest of that block is reported by the caller.
BACKEND_POLICY_FIELDS = ("backendAuth", "backendTLS", "http", "tcp")
_TARGET = {"backendAuth": "auth", "backendTLS": "tls", "http": "http", "tcp": "tcp"}
_AZURE_CLIENT_SECRET = {
    "tenantID": ("tenant_id", "tenantId"),
    "clientID": ("client_id", "clientId"),
    "clientSecret": ("client_secret", "clientSecret"),
}
_USER_IDENTITY = ("clientId", "objectId", "resourceId")


def backend_policies(
    out: Out, where: str, block: Mapping[str, Any], *, secret_name: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """(AgentgatewayBackend policies, {policy name: the field it was written in}) from one policy block.

    Only the fields in BACKEND_POLICY_FIELDS are read here.
    """
    policies: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, target in _TARGET.items():
        if block.get(key) is None:
            continue
        fld = join(where, key)
        if key == "backendAuth":
            value = auth(out, fld, block[key], secret_name=secret_name)
        elif key == "backendTLS":
            value = tls(out, fld, block[key])
        else:
            value = _timeout(out, fld, block[key], key)
        if value is not None:
            policies[target] = value
            sources[target] = fld
    return policies, sources


def auth(out: Out, where: str, block: Any, *, secret_name: str) -> dict[str, Any] | None:
    """`backendAuth` -> `policies.auth`; None (and a problem) when llmgw cannot do what it says."""
    if block == "copilot":
        out.unsupported(where, "GitHub Copilot credentials")
        return None
    blk = out.mapping(where, block)
    if blk is None:
        return None
    if "location" in blk:
        out.unsupported(join(where, "location"), "write it inside key: {value, location}")
    kinds = [k for k in blk if k != "location"]
    if len(kinds) != 1:
        out.fail(where, f"set exactly one credential (key, azure, aws, gcp); found {kinds or 'none'}")
        return None
    kind = kinds[0]
    fld = join(where, kind)
    if kind == "key":
        return _key(out, where, blk, secret_name=secret_name)
    if kind == "azure":
        return _azure(out, fld, blk[kind], secret_name=secret_name)
    if kind == "aws":
        return _aws(out, fld, blk[kind], secret_name=secret_name)
    if kind == "gcp":
        return _gcp(out, fld, blk[kind], secret_name=secret_name)
    out.unsupported(fld)
    return None


def _key(out: Out, where: str, blk: Mapping[str, Any], *, secret_name: str) -> dict[str, Any] | None:
    """`key: sk-...`, `key: {file: ...}` or `key: {value: ..., location: {header: {name, prefix}}}`."""
    fld = join(where, "key")
    value, location, loc_fld = blk["key"], None, ""
    if isinstance(value, Mapping) and "value" in value:
        out.unknown(fld, value, ("value", "location"))
        location, loc_fld = value.get("location"), join(fld, "location")
        value, fld = value["value"], join(fld, "value")
    if isinstance(value, Mapping):
        out.unknown(fld, value, ("file",))
        if "file" in value:
            out.unsupported(join(fld, "file"), "write the key inline (with $VAR for the environment)")
        return None
    result: dict[str, Any] = {}
    if location is not None:
        loc = _location(out, loc_fld, location)
        if loc is None:
            return None
        result["location"] = loc
    key = inline_key(out, fld, value, secret_name=secret_name)
    return None if key is None else {**key, **result}


def inline_key(out: Out, fld: str, value: Any, *, secret_name: str) -> dict[str, Any] | None:
    """An API key written in the config (`$VAR` from the environment) -> a Secret and `secretRef` to it."""
    key = string(out, fld, value)
    if key is None:
        return None
    name = out.secret(secret_name, {"key": key}, [("", fld)])
    return {"secretRef": {"name": name, "key": "key"}}


def _location(out: Out, where: str, block: Any) -> dict[str, Any] | None:
    loc = out.mapping(where, block)
    if loc is None:
        return None
    out.unknown(where, loc, ("header",))
    header = out.mapping(join(where, "header"), loc.get("header"))
    if header is None or not header:
        if header is not None:
            out.fail(join(where, "header"), "is required (llmgw sends credentials in a header)")
        return None
    out.unknown(join(where, "header"), header, ("name", "prefix"))
    name = string(out, join(where, "header.name"), header.get("name"))
    if name is None:
        return None
    prefix = header.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        out.fail(join(where, "header.prefix"), "must be a string")
        return None
    # As in agentgateway, a location without a prefix sends the value as it is.
    return {"header": {"name": name, "prefix": prefix or ""}}


def _azure(out: Out, where: str, block: Any, *, secret_name: str) -> dict[str, Any] | None:
    blk = out.mapping(where, block)
    if blk is None:
        return None
    out.unknown(where, blk, ("explicitConfig", "implicit", "developerImplicit"))
    for mode in ("implicit", "developerImplicit"):
        out.unknown(join(where, mode), blk.get(mode), ())
    explicit = blk.get("explicitConfig")
    if not isinstance(explicit, Mapping):
        return {"azure": dict(blk)}  # implicit / developerImplicit / a wrong shape: cloud_auth says which
    efld = join(where, "explicitConfig")
    out.unknown(efld, explicit, ("clientSecret", "managedIdentity", "workloadIdentity"))
    out.unknown(join(efld, "workloadIdentity"), explicit.get("workloadIdentity"), ())
    managed = explicit.get("managedIdentity")
    if isinstance(managed, Mapping):
        out.unknown(join(efld, "managedIdentity"), managed, ("userAssignedIdentity",))
        out.unknown(
            join(efld, "managedIdentity.userAssignedIdentity"), managed.get("userAssignedIdentity"), _USER_IDENTITY
        )
    secret = explicit.get("clientSecret")
    if not isinstance(secret, Mapping) or len(explicit) != 1:
        return {"azure": dict(blk)}
    sfld = join(efld, "clientSecret")
    known = [name for names in _AZURE_CLIENT_SECRET.values() for name in names]
    out.unknown(sfld, secret, known)
    data: dict[str, str] = {}
    origin: list[tuple[str, str]] = [("", sfld)]
    for target, names in _AZURE_CLIENT_SECRET.items():
        given = [n for n in names if n in secret]
        if len(given) != 1:
            out.fail(sfld, f"set {names[0]} (or {names[1]}) once: a non-empty string")
            return None
        value = string(out, join(sfld, given[0]), secret[given[0]])
        if value is None:
            return None
        data[target] = value
        origin.append((f"stringData.{target}", join(sfld, given[0])))
    name = out.secret(secret_name, data, origin)
    return {"azure": {"secretRef": {"name": name}}}


def _aws(out: Out, where: str, block: Any, *, secret_name: str) -> dict[str, Any] | None:
    blk = out.mapping(where, block)
    if blk is None:
        return None
    out.unknown(where, blk, ("accessKeyId", "secretAccessKey", "sessionToken", "region", "serviceName"))
    service = blk.get("serviceName")
    if service is not None and service != "bedrock":
        out.unsupported(join(where, "serviceName"), "llmgw signs for bedrock only")
        return None
    result: dict[str, Any] = {}
    if blk.get("region") is not None:
        region = string(out, join(where, "region"), blk["region"])
        if region is None:
            return None
        result["region"] = region
    keys = {"accessKey": "accessKeyId", "secretKey": "secretAccessKey", "sessionToken": "sessionToken"}
    if any(blk.get(k) is not None for k in keys.values()):
        data: dict[str, str] = {}
        origin: list[tuple[str, str]] = [("", where)]
        for target, key in keys.items():
            if blk.get(key) is None:
                if key != "sessionToken":
                    out.fail(join(where, key), "is required with inline AWS keys")
                    return None
                continue
            value = string(out, join(where, key), blk[key])
            if value is None:
                return None
            data[target] = value
            origin.append((f"stringData.{target}", join(where, key)))
        result["secretRef"] = {"name": out.secret(secret_name, data, origin)}
    return {"aws": result}


def _gcp(out: Out, where: str, block: Any, *, secret_name: str) -> dict[str, Any] | None:
    blk = out.mapping(where, block)
    if blk is None:
        return None
    out.unknown(where, blk, ("type", "credential"))
    if blk.get("type") not in (None, "accessToken"):
        out.unsupported(join(where, "type"), "llmgw fetches access tokens only")
        return None
    credential = blk.get("credential")
    if credential is None:
        return {"gcp": {}}
    if isinstance(credential, Mapping):
        out.unsupported(join(where, "credential"), "write the credential JSON inline")
        return None
    value = string(out, join(where, "credential"), credential)
    if value is None:
        return None
    fld = join(where, "credential")
    name = out.secret(secret_name, {"credentials.json": value}, [("", fld)])
    return {"gcp": {"secretRef": {"name": name}}}


def tls(out: Out, where: str, block: Any) -> dict[str, Any] | None:
    """`backendTLS` -> `policies.tls` (sni, insecureSkipVerify); CA/client certificate files are reported."""
    blk = out.mapping(where, block)
    if blk is None:
        return None
    out.unknown(where, blk, ("hostname", "insecure", "insecureHost"))
    result: dict[str, Any] = {}
    if blk.get("hostname") is not None:
        sni = string(out, join(where, "hostname"), blk["hostname"])
        if sni is None:
            return None
        result["sni"] = sni
    for key, value in (("insecure", "All"), ("insecureHost", "Hostname")):
        flag = blk.get(key, False)
        if not isinstance(flag, bool):
            out.fail(join(where, key), "must be true or false")
            return None
        if flag and "insecureSkipVerify" not in result:
            result["insecureSkipVerify"] = value
    return result


def _timeout(out: Out, where: str, block: Any, policy: str) -> dict[str, Any] | None:
    """`http: {requestTimeout}` and `tcp: {connectTimeout}`; backends.py checks the durations."""
    blk = out.mapping(where, block)
    if blk is None:
        return None
    fld = "requestTimeout" if policy == "http" else "connectTimeout"
    out.unknown(where, blk, (fld,))
    return {fld: blk[fld]} if blk.get(fld) is not None else None
