"""HTTPS listeners: `tls.certificateRefs` -> the certificate and key Envoy serves, checked here.

A listener's `tls` block is read once (`parse_tls`, from `listeners.py`) and its
Secrets are resolved against the manifests' Secrets (`resolve_certificates`):
a Secret must exist, be readable across namespaces only under a ReferenceGrant,
hold `tls.crt` and `tls.key` in PEM, and the key must belong to the first
certificate. A listener whose certificates do not resolve is not served and
its problem carries the Gateway API reason (`InvalidCertificateRef`,
`RefNotPermitted`), which becomes its `ResolvedRefs` condition.

The key leaves this module only inside `TlsCertificateIR`, whose repr hides it;
Envoy receives it as an SDS secret (controlplane/xds/listener_tls.py), never in
a listener. Error messages name the Secret and key, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.gatewayapi.grants import ReferenceGrants
from controlplane.ir import TlsCertificateIR
from controlplane.resources import Problem, Resource

GATEWAY_API = "gateway.networking.k8s.io"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
SECRET_PREFIX = "llmgw-tls/"


@dataclass(frozen=True)
class CertRef:
    """One `certificateRefs` entry: the Secret "<ns>/<name>" and where it was written."""

    namespace: str
    name: str
    field: str  # "spec.listeners[i].tls.certificateRefs[j]"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class TlsProblem(Exception):
    """A listener's `tls` block llmgw cannot serve: the sub-field, why, and the condition reason."""

    def __init__(self, sub: str, message: str, reason: str = "Invalid") -> None:
        super().__init__(message)
        self.sub = sub
        self.message = message
        self.reason = reason


def parse_tls(raw: Any, *, protocol: str, gateway_ns: str, fld: str) -> tuple[tuple[CertRef, ...], list[str]]:
    """The certificate references of an HTTPS listener, and notes on `tls` fields llmgw does not act on.

    Raises TlsProblem when the listener cannot be served (Passthrough, no certificate, a
    reference that is not a core Secret).
    """
    if protocol == "HTTP":
        if raw is not None:
            raise TlsProblem(".tls", "is only valid on an HTTPS listener")
        return (), []
    if not isinstance(raw, Mapping):
        raise TlsProblem(".tls", "is required on an HTTPS listener (certificateRefs to a kubernetes.io/tls Secret)")
    mode = raw.get("mode", "Terminate")
    if mode == "Passthrough":
        raise TlsProblem(
            ".tls.mode", "Passthrough is not supported by llmgw (it terminates TLS: use Terminate)", "UnsupportedValue"
        )
    if mode != "Terminate":
        raise TlsProblem(".tls.mode", f"must be Terminate, got {mode!r}")
    notes: list[str] = []
    for sub in ("options", "frontendValidation"):
        if raw.get(sub):
            notes.append(f".tls.{sub}")
    refs = raw.get("certificateRefs")
    if not isinstance(refs, list) or not refs:
        raise TlsProblem(".tls.certificateRefs", "needs at least one Secret reference", "InvalidCertificateRef")
    out: list[CertRef] = []
    for j, ref in enumerate(refs):
        at = f".tls.certificateRefs[{j}]"
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref["name"]:
            raise TlsProblem(f"{at}.name", "is required (a string)", "InvalidCertificateRef")
        group, kind = ref.get("group", ""), ref.get("kind", "Secret")
        if group not in ("", "core") or kind != "Secret":
            raise TlsProblem(
                at, f"{group or 'core'}/{kind} is not supported by llmgw (a core Secret only)", "InvalidCertificateRef"
            )
        ns = ref.get("namespace") or gateway_ns
        out.append(CertRef(str(ns), ref["name"], f"{fld}{at}"))
    return tuple(out), notes


def resolve_certificates(
    *,
    gateway: Resource,
    refs: tuple[CertRef, ...],
    secrets: Mapping[str, Mapping[str, str]],
    grants: ReferenceGrants,
) -> tuple[tuple[TlsCertificateIR, ...], Problem | None]:
    """The certificates a listener serves, or the problem with the first reference that does not resolve."""
    out: list[TlsCertificateIR] = []
    for ref in refs:

        def bad(message: str, reason: str = "InvalidCertificateRef", ref: CertRef = ref) -> Problem:
            return Problem(gateway.file, gateway.ref, ref.field, message, reason)

        if not grants.permits(
            from_group=GATEWAY_API,
            from_kind="Gateway",
            from_ns=gateway.namespace,
            to_ns=ref.namespace,
            to_group="",
            to_kind="Secret",
            to_name=ref.name,
        ):
            return (), bad(
                f"Secret {ref.key} is in another namespace and no ReferenceGrant there allows it", "RefNotPermitted"
            )
        data = secrets.get(ref.key)
        if data is None:
            return (), bad(f"Secret {ref.key} not found")
        crt, key = data.get(CERT_KEY), data.get(KEY_KEY)
        if not crt or not key:
            return (), bad(f"Secret {ref.key} needs both {CERT_KEY} and {KEY_KEY} (a kubernetes.io/tls Secret)")
        why = _pem_problem(crt, key)
        if why:
            return (), bad(f"Secret {ref.key}: {why}")
        out.append(TlsCertificateIR(secret=SECRET_PREFIX + ref.key, certificate_chain=crt, private_key=key))
    return tuple(out), None


def _pem_problem(crt: str, key: str) -> str | None:
    """Why this certificate chain and key cannot be served (never quoting either), or None.

    `cryptography` is imported here, on the first HTTPS listener: ~14 MiB of RSS the control
    plane of a gateway without one does not need (bench/results/soak.md).
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(crt.encode())
    except ValueError:
        return f"{CERT_KEY} is not a PEM certificate"
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        return f"{KEY_KEY} is not an unencrypted PEM private key"
    except UnsupportedAlgorithm:
        return f"{KEY_KEY} holds a key type llmgw cannot read"
    public = certs[0].public_key()
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(der, spki) != public.public_bytes(der, spki):
        return f"{KEY_KEY} does not belong to the first certificate of {CERT_KEY}"
    return None
