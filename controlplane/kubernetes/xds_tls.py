"""Mutual TLS between the controller and its data planes: ADS and the extproc config channel.

Both carry keys (SDS secrets of plain backends and HTTPS listeners over ADS; the
providers' credentials over the config channel), and both share the
controller's gRPC port. Encryption alone would not be enough: any pod that can
reach the controller could subscribe as "extproc-0@<ns>/<gw>" and receive that
Gateway's credentials. So the controller

- keeps a CA in a Secret it owns (`llmgw-xds-ca` in its namespace, created on
  first start; every replica reads the same one),
- serves with a certificate from that CA for its Service name and requires a
  client certificate from the same CA,
- gives each Gateway's pods a client certificate naming that Gateway (a URI SAN
  `spiffe://llmgw.dev/gateway/<ns>/<name>`, Secret `<gw>-llmgw-xds` in the
  Gateway's namespace, mounted in both containers), and
- serves a stream only the Gateway its peer certificate names
  (`kubernetes/xds.py` checks ADS's `node.cluster` and the worker's name).

A Unix socket would not do: the controller is another pod. A service mesh
would, but llmgw cannot assume one. Plain functions here; the controller does
the API calls.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from extproc import wire

CA_SECRET = "llmgw-xds-ca"
CLIENT_SECRET_SUFFIX = "-llmgw-xds"
MOUNT = "/etc/llmgw/xds-tls"  # in both data plane containers
CA_FILE, CERT_FILE, KEY_FILE = wire.CONFIG_TLS_CA_FILE, wire.CONFIG_TLS_CERT_FILE, wire.CONFIG_TLS_KEY_FILE
_IDENTITY_PREFIX = "spiffe://llmgw.dev/gateway/"
_CA_YEARS = 10
_LEAF_DAYS = 825


@dataclass(frozen=True)
class Pem:
    """A PEM certificate and its PEM key (the key never in a repr)."""

    cert: str
    key: str = ""

    def __repr__(self) -> str:
        return f"Pem(cert={len(self.cert)} chars, key=<hidden>)"


def new_ca() -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmgw xds CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * _CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def issue_server(ca: Pem, *, hosts: list[str]) -> Pem:
    """The controller's serving certificate for `hosts` (DNS names or IP addresses)."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _issue(ca, common_name=hosts[0], sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH)


def issue_client(ca: Pem, *, gateway: str) -> Pem:
    """A data plane's client certificate naming its Gateway "<ns>/<name>"."""
    return _issue(
        ca,
        common_name="llmgw data plane",
        sans=[x509.UniformResourceIdentifier(_IDENTITY_PREFIX + gateway)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )


def client_secret_name(gateway_name: str) -> str:
    return gateway_name + CLIENT_SECRET_SUFFIX


def gateway_of_cert(pem: str | bytes) -> str | None:
    """The Gateway "<ns>/<name>" a client certificate names, or None."""
    try:
        cert = x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(_IDENTITY_PREFIX):
            return uri.removeprefix(_IDENTITY_PREFIX)
    return None


def peer_gateway(context: grpc.aio.ServicerContext) -> str | None:
    """The Gateway the peer's verified client certificate names (None on a plaintext server)."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    return gateway_of_cert(pems[0]) if pems else None


def server_credentials(ca: Pem, server: Pem) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(server.key.encode(), server.cert.encode())], root_certificates=ca.cert.encode(), require_client_auth=True
    )


def same_ca(secret_data: dict[str, str], ca: Pem) -> bool:
    """Whether a client Secret (decoded) was issued by `ca` and is complete."""
    return secret_data.get(CA_FILE) == ca.cert and bool(secret_data.get(CERT_FILE)) and bool(secret_data.get(KEY_FILE))


def _issue(ca: Pem, *, common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> Pem:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
