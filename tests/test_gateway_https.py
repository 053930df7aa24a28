"""HTTPS listeners end to end: the openai SDK over TLS, SNI, SDS rotation without a restart.

A test CA (trustme) signs the listener certificates held in Secret manifests.
Rotating the Secret's file changes one SDS secret: new connections get the new
certificate, Envoy keeps its process and never rebuilds the listener, and its
config dump holds no private key.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import trustme
from cryptography import x509

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration

CA = trustme.CA()


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _secret(name: str, leaf: trustme.LeafCert) -> str:
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{_indent(leaf.cert_chain_pems[0].bytes().decode())}
  tls.key: |
{_indent(leaf.private_key_pem.bytes().decode())}
"""


def _gateway(port: int, upstream: int) -> str:
    return (
        f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners:
  - name: local
    protocol: HTTPS
    port: {port}
    hostname: localhost
    tls: {{certificateRefs: [{{name: local-cert}}]}}
  - name: any
    protocol: HTTPS
    port: {port}
    tls: {{certificateRefs: [{{name: default-cert}}]}}
"""
        + http_route_yaml(route_rule("/v1", "fake"))
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: fake, namespace: default}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {upstream}}}}}
  policies: {{auth: {{key: sk-upstream}}}}
"""
    )


@dataclass
class Https:
    gw: GatewayProcess
    fake: FakeProviderThread
    local: trustme.LeafCert
    default: trustme.LeafCert


@pytest.fixture(scope="module")
def https() -> Iterator[Https]:
    fake = FakeProviderThread(name="tls").start()
    gw = GatewayProcess(workers=1)
    local, default = CA.issue_cert("localhost"), CA.issue_cert("default.test")
    gw.write("gw.yaml", _gateway(gw.port, fake.port))
    gw.write("certs.yaml", _secret("local-cert", local) + _secret("default-cert", default))
    try:
        gw.start()
        yield Https(gw, fake, local, default)
    finally:
        gw.stop()
        gw.cleanup()
        fake.stop()


def _served_serial(port: int, sni: str) -> int:
    """The serial number of the certificate the gateway presents for `sni` (verified against the CA)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # which certificate comes back is the question, not whether it names `sni`
    CA.configure_trust(ctx)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def _client(gw: GatewayProcess) -> openai.OpenAI:
    ctx = ssl.create_default_context()
    CA.configure_trust(ctx)
    return openai.OpenAI(
        base_url=f"https://localhost:{gw.port}/v1",
        api_key="client",
        max_retries=0,
        http_client=httpx.Client(verify=ctx, timeout=10),
    )


def test_openai_sdk_over_https(https: Https) -> None:
    resp = _client(https.gw).chat.completions.create(model="m", messages=[{"role": "user", "content": "secure"}])
    assert resp.choices[0].message.content == "Hello from tls: secure"
    assert https.fake.requests[-1].headers["authorization"] == "Bearer sk-upstream"


def test_sni_picks_the_listener_certificate(https: Https) -> None:
    assert _served_serial(https.gw.port, "localhost") == _serial(https.local)
    assert _served_serial(https.gw.port, "elsewhere.test") == _serial(https.default)


def test_config_dump_holds_no_private_key(https: Https) -> None:
    dump = https.gw.admin("/config_dump?include_eds").text
    assert "llmgw-tls/default/local-cert" in dump  # the secret is there, by name
    for leaf in (https.local, https.default):
        body = leaf.private_key_pem.bytes().decode().splitlines()[1]
        assert body not in dump
    assert "PRIVATE KEY" not in dump


def _stat(gw: GatewayProcess, name: str) -> int:
    for line in gw.admin(f"/stats?filter=^{name}$").text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError(f"no stat {name}")


def test_rotated_secret_is_served_without_a_restart(https: Https) -> None:
    gw = https.gw
    envoy_pids = [p for p in gw.child_pids() if b"envoy" in Path(f"/proc/{p}/cmdline").read_bytes()]
    modified = _stat(gw, "listener_manager.listener_modified")
    rotated = CA.issue_cert("localhost")
    gw.write("certs.yaml", _secret("local-cert", rotated) + _secret("default-cert", https.default))
    wait_until(lambda: _served_serial(gw.port, "localhost") == _serial(rotated), "the rotated certificate served")
    # Same Envoy, same listener: only the SDS secret changed.
    assert [p for p in gw.child_pids() if p in envoy_pids] == envoy_pids
    assert _stat(gw, "listener_manager.listener_modified") == modified
    resp = _client(gw).chat.completions.create(model="m", messages=[{"role": "user", "content": "rotated"}])
    assert resp.choices[0].message.content == "Hello from tls: rotated"
    https.local = rotated


def test_a_missing_secret_keeps_the_last_good_certificate(https: Https) -> None:
    gw = https.gw
    served = _served_serial(gw.port, "localhost")
    gw.write("certs.yaml", _secret("default-cert", https.default))
    wait_until(lambda: "InvalidCertificateRef" in gw.log() or "not found" in gw.log(), "the problem logged")
    assert "spec.listeners[0].tls.certificateRefs[0]" in gw.log()
    assert _served_serial(gw.port, "localhost") == served
