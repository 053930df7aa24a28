"""The certificates of the controller <-> data plane mutual TLS (controlplane/kubernetes/xds_tls.py)."""

from __future__ import annotations

from cryptography import x509

from controlplane.kubernetes import xds_tls


def test_client_certificate_names_its_gateway_and_the_key_stays_out_of_reprs() -> None:
    ca = xds_tls.new_ca()
    client = xds_tls.issue_client(ca, gateway="team-a/llm")
    assert xds_tls.gateway_of_cert(client.cert) == "team-a/llm"
    assert "PRIVATE" not in repr(client) and "PRIVATE" not in repr(ca)
    issuer = x509.load_pem_x509_certificate(client.cert.encode()).issuer
    assert issuer == x509.load_pem_x509_certificate(ca.cert.encode()).subject


def test_server_certificate_covers_names_and_addresses() -> None:
    ca = xds_tls.new_ca()
    server = xds_tls.issue_server(ca, hosts=["llmgw-controller.llmgw-system.svc", "127.0.0.1"])
    sans = (
        x509.load_pem_x509_certificate(server.cert.encode())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert sans.get_values_for_type(x509.DNSName) == ["llmgw-controller.llmgw-system.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert xds_tls.gateway_of_cert(server.cert) is None  # a server certificate names no Gateway


def test_a_client_secret_from_another_ca_is_reissued() -> None:
    ca, other = xds_tls.new_ca(), xds_tls.new_ca()
    client = xds_tls.issue_client(ca, gateway="default/gw")
    data = {"ca.crt": ca.cert, "tls.crt": client.cert, "tls.key": client.key}
    assert xds_tls.same_ca(data, ca) and not xds_tls.same_ca(data, other)
    assert not xds_tls.same_ca({"ca.crt": ca.cert}, ca)
