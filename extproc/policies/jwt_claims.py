"""JWT: the payloads Envoy's jwt_authn validated -> whether a route's JWT policy is met, and the Identity.

Envoy checks signature, issuer, audience and expiry (controlplane/xds/jwt_authn.py)
and puts each valid token's payload in dynamic metadata under its provider's
name; the router stage's ext_proc filter forwards that namespace with the
request headers. Claims become the identity: `key_id` "<iss>/<sub>", `user` =
`sub`, `team` = `team`, `tenant` = `tenant` (or Entra ID's `tid`); no claim is
a secret, and the token itself never reaches the extproc's logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import json_format

from extproc import wire
from extproc.contract import JwtPolicyConfig
from extproc.identity import Identity


def payloads(req: ep.ProcessingRequest) -> dict[str, dict[str, Any]]:
    """Provider name -> payload of the tokens jwt_authn validated on this request (empty: none)."""
    meta = req.metadata_context.filter_metadata
    if wire.JWT_METADATA_NAMESPACE not in meta:
        return {}
    found = json_format.MessageToDict(meta[wire.JWT_METADATA_NAMESPACE])
    return {k: v for k, v in found.items() if isinstance(v, dict)}


def identity(payload: Mapping[str, Any]) -> Identity:
    def claim(*names: str) -> str | None:
        for name in names:
            value = payload.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        return None

    sub = claim("sub") or ""
    return Identity(
        source="jwt",
        key_id=f"{claim('iss') or ''}/{sub}",
        user=sub or None,
        team=claim("team"),
        tenant=claim("tenant", "tid"),
    )


def check(
    *, policy: JwtPolicyConfig, found: Mapping[str, Mapping[str, Any]], headers: Mapping[str, str]
) -> tuple[bool, Identity | None]:
    """Whether the request meets `policy` (given the validated payloads) and who the token names."""
    for name in policy.providers:
        payload = found.get(name)
        if payload is not None:
            return True, identity(payload)
    if policy.mode == "Permissive":
        return True, None
    if policy.mode == "Optional":
        value = headers.get(policy.header)
        presented = value is not None and (not policy.prefix or value.lower().startswith(policy.prefix.lower()))
        return not presented, None
    return False, None
