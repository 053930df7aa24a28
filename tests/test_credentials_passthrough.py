"""`auth.passthrough` in the extproc: which client credential is forwarded, and where it goes."""

from __future__ import annotations

import pytest

from extproc.contract import AuthConfig, ProviderConfig
from extproc.credentials import SignedRequest, auth_headers, client_token


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"authorization": "Bearer sk-a"}, "sk-a"),
        ({"authorization": "bearer  sk-a "}, "sk-a"),
        ({"authorization": "Basic dXNlcg=="}, "Basic dXNlcg=="),  # not a bearer token: the value as sent
        ({"x-api-key": "sk-ant"}, "sk-ant"),
        ({"api-key": "k-azure"}, "k-azure"),
        ({"x-goog-api-key": "k-goog"}, "k-goog"),
        ({"authorization": "Bearer sk-a", "x-api-key": "sk-b"}, "sk-a"),  # the bearer token first
        ({}, ""),
    ],
)
def test_client_token(headers: dict[str, str], token: str) -> None:
    assert client_token(headers) == token


def _request(token: str) -> SignedRequest:
    return SignedRequest(method="POST", authority="h", path="/v1/messages", headers={}, body=b"", client_token=token)


def test_the_token_goes_to_the_providers_header() -> None:
    anthropic = ProviderConfig(
        id="ns/b/p",
        backend="ns/b",
        kind="anthropic",
        host="h",
        auth=AuthConfig(header="x-api-key", prefix="", kind="passthrough"),
    )
    assert auth_headers(anthropic, _request("sk-client")) == {"x-api-key": "sk-client"}
    assert auth_headers(anthropic, _request("")) == {}  # nothing to forward: no header at all
    assert "sk-client" not in repr(_request("sk-client"))
