"""Auth kind `gcp` (extproc.credentials.gcp) against a local OAuth token endpoint.

The service-account key is generated here; the token endpoint (tests/gcp_fake.py) checks
that the JWT assertion it receives is signed by that key and carries the right claims.
No test asserts on timing: background refreshes are awaited with `wait_until`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.contract import AuthConfig, ProviderConfig
from extproc.credentials import CredentialError, SignedRequest, auth_headers
from extproc.credentials import gcp as credentials_gcp
from tests.gcp_fake import CLIENT_EMAIL, FakeTokenServer
from tests.harness import free_port, wait_until

REQUEST = SignedRequest(method="POST", authority="aiplatform.googleapis.com", path="/v1/x", headers={}, body=b"{}")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture(autouse=True)
def _fresh_sources() -> Iterator[None]:
    credentials_gcp._sources.clear()
    yield
    for source in credentials_gcp._sources.values():
        source.stop()
    credentials_gcp._sources.clear()


@pytest.fixture
def oauth() -> Iterator[FakeTokenServer]:
    server = FakeTokenServer().start()
    yield server
    server.stop()


def _provider(credentials_json: str = "", pid: str = "default/vertex/p") -> ProviderConfig:
    auth = AuthConfig(
        header="authorization",
        prefix="Bearer ",
        kind="gcp",
        source="secret default/gcp-sa" if credentials_json else "",
        params={"credentials_json": credentials_json} if credentials_json else {},
    )
    return ProviderConfig(
        id=pid, backend="default/vertex", kind="vertexai", host="aiplatform.googleapis.com", auth=auth
    )


def test_service_account_jwt_is_signed_and_token_cached(oauth: FakeTokenServer) -> None:
    provider = _provider(json.dumps(oauth.service_account()))
    for _ in range(3):
        assert auth_headers(provider, REQUEST) == {"authorization": "Bearer ya29.fake-token-1"}
    [grant] = oauth.grants
    assert grant.signature_ok, "the JWT assertion is not signed by the service account's key"
    assert grant.header["alg"] == "RS256" and grant.header["kid"] == "kid-1"
    # google-auth addresses the assertion to Google's token endpoint whatever token_uri says
    assert grant.claims["iss"] == CLIENT_EMAIL and grant.claims["aud"] == "https://oauth2.googleapis.com/token"
    assert grant.claims["scope"] == SCOPE
    assert grant.claims["exp"] > grant.claims["iat"]


def test_token_is_refreshed_in_the_background(oauth: FakeTokenServer, monkeypatch: pytest.MonkeyPatch) -> None:
    oauth.expires_in = 4  # refreshed after half its lifetime
    monkeypatch.setattr(credentials_gcp, "VALIDITY_SKEW", 0.5)
    provider = _provider(json.dumps(oauth.service_account()))
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer ya29.fake-token-1"}
    wait_until(lambda: len(oauth.issued) >= 2, timeout=20, what="a background refresh")
    wait_until(
        lambda: auth_headers(provider, REQUEST)["authorization"] != "Bearer ya29.fake-token-1",
        timeout=5,
        what="the refreshed token being served",
    )
    assert all(g.signature_ok for g in oauth.grants)


def test_rejected_grant_names_the_credential_not_the_key(oauth: FakeTokenServer) -> None:
    oauth.fail_status = 400
    info = oauth.service_account()
    provider = _provider(json.dumps(info))
    with pytest.raises(CredentialError) as failure:
        auth_headers(provider, REQUEST)
    message = str(failure.value)
    assert "secret default/gcp-sa" in message and CLIENT_EMAIL in message and "default/vertex/p" in message
    assert "invalid_grant" in message
    assert "PRIVATE KEY" not in message and info["private_key"][40:80] not in message
    with pytest.raises(CredentialError):  # while failing, later requests fail at once with the same reason
        auth_headers(provider, REQUEST)


def test_prefetch_warms_the_cache(oauth: FakeTokenServer) -> None:
    provider = _provider(json.dumps(oauth.service_account()))
    credentials_gcp.prefetch(provider)
    wait_until(lambda: oauth.issued, what="the prefetched token")
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer ya29.fake-token-1"}
    assert len(oauth.grants) == 1


def test_unreachable_token_endpoint(oauth: FakeTokenServer) -> None:
    info = oauth.service_account(token_uri=f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(CredentialError, match="secret default/gcp-sa"):
        auth_headers(_provider(json.dumps(info)), REQUEST)


def test_unsupported_credential_type() -> None:
    info = {"type": "external_account", "credential_source": {"executable": {"command": "/bin/true"}}}
    with pytest.raises(CredentialError, match="external_account"):
        auth_headers(_provider(json.dumps(info)), REQUEST)


def test_malformed_credentials_json() -> None:
    with pytest.raises(CredentialError, match="not valid JSON") as failure:
        auth_headers(_provider('{"private_key": "-----BEGIN PRIVATE KEY----- abc'), REQUEST)
    assert "abc" not in str(failure.value)
    with pytest.raises(CredentialError, match="JSON object"):
        auth_headers(_provider("[1, 2]"), REQUEST)


def test_ambient_application_default_credentials(
    oauth: FakeTokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "adc.json"
    key_file.write_text(json.dumps(oauth.service_account()))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    assert auth_headers(_provider(), REQUEST) == {"authorization": "Bearer ya29.fake-token-1"}
    assert oauth.grants[0].signature_ok


def test_rotated_secret_is_a_new_source_and_old_ones_are_stopped(
    oauth: FakeTokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials_gcp, "MAX_SOURCES", 1)
    first = _provider(json.dumps(oauth.service_account()))
    rotated = _provider(json.dumps(oauth.service_account(private_key_id="kid-2")))
    assert auth_headers(first, REQUEST)["authorization"].endswith("-1")
    old = credentials_gcp.source_for(first)
    assert auth_headers(rotated, REQUEST)["authorization"].endswith("-2")
    assert old._stop.is_set() and len(credentials_gcp._sources) == 1
    assert [g.header["kid"] for g in oauth.grants] == ["kid-1", "kid-2"]
