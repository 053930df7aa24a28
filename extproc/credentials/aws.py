"""AWS SigV4 for Bedrock (auth kind `aws`), signed with botocore over the request as it leaves Envoy.

The signature covers the method, path, host, content type and a SHA-256 of
the body, so it must be computed in the attempt stage after translation (the
Converse body differs from the client's) and for the exact Host Envoy sends.
That Host is the provider's host: AI routes use `auto_host_rewrite`, which
puts the endpoint's hostname (no port) there. The `:authority` the attempt
stage sees is not reliable for this: on the first request of a new upstream
connection Envoy applies the rewrite only after the upstream filters ran, so
it still holds the client's authority (measured with Envoy 1.40).

botocore does the signing: SigV4 has enough corner cases (path
double-encoding, header canonicalisation) that a home-made signer is a
liability, and botocore is what the AWS SDKs' Python users already trust.

Credentials, in order:

1. the Secret named by `policies.auth.aws.secretRef` (resolved by the control
   plane into `params`: `access_key_id`, `secret_access_key`, optional
   `session_token`);
2. otherwise botocore's default chain (environment, shared config/profile,
   web identity, container and instance metadata), resolved once per process
   and shared. Temporary credentials from the chain are `RefreshableCredentials`:
   botocore refreshes them ahead of expiry (advisory window 15 minutes, then
   mandatory at 10), so a request only waits during that rare refresh.

Failures raise `CredentialError` naming the provider and the missing piece,
never a key.
"""

from __future__ import annotations

import threading
import time

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError

from extproc.contract import ProviderConfig
from extproc.credentials import CredentialError, SignedRequest
from extproc.providers.bedrock import SIGNING_SERVICE, region

# Headers the signer may cover; everything else Envoy adds or changes later
# (content-length, x-request-id, x-forwarded-*) must stay out of the signature.
_SIGNED = ("content-type",)

_chain_lock = threading.Lock()
_chain: Credentials | None = None
_chain_missing_until = 0.0  # after the chain found nothing, do not search again before this
CHAIN_RETRY_S = 30.0


def auth_headers(provider: ProviderConfig, request: SignedRequest) -> dict[str, str]:
    credentials = _credentials(provider)
    try:
        frozen = credentials.get_frozen_credentials()
    except BotoCoreError as exc:
        raise CredentialError(f"AWS credentials for provider {provider.id} could not be refreshed: {exc}") from None
    if not frozen.access_key or not frozen.secret_key:
        raise CredentialError(f"AWS credentials for provider {provider.id} are incomplete")
    return sign(
        credentials=frozen,
        region=region(provider),
        method=request.method,
        authority=provider.host or request.authority,
        path=request.path,
        headers=request.headers,
        body=request.body,
    )


def sign(
    *,
    credentials: ReadOnlyCredentials,
    region: str,
    method: str,
    authority: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> dict[str, str]:
    """The SigV4 headers for one request: authorization, x-amz-date, x-amz-security-token."""
    signed = {k.lower(): v for k, v in headers.items() if k.lower() in _SIGNED}
    aws_request = AWSRequest(method=method, url=f"https://{authority}{path}", data=body, headers=signed)
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(aws_request)
    out = {
        "authorization": aws_request.headers["Authorization"],
        "x-amz-date": aws_request.headers["X-Amz-Date"],
    }
    if credentials.token:
        out["x-amz-security-token"] = credentials.token
    return out


def _credentials(provider: ProviderConfig) -> Credentials:
    params = provider.auth.params if provider.auth else {}
    access_key = params.get("access_key_id", "")
    secret_key = params.get("secret_access_key", "")
    if access_key or secret_key:
        if not access_key:
            raise CredentialError(f"the AWS Secret of provider {provider.id} has no accessKey")
        if not secret_key:
            raise CredentialError(f"the AWS Secret of provider {provider.id} has no secretKey")
        return Credentials(access_key, secret_key, params.get("session_token") or None)
    chain = _default_chain()
    if chain is None:
        raise CredentialError(
            f"no AWS credentials for provider {provider.id}: set policies.auth.aws.secretRef, or provide them "
            "through the default chain (environment, shared config/profile, container or instance metadata)"
        )
    return chain


def _default_chain() -> Credentials | None:
    """botocore's default credential chain, resolved once per process.

    When it finds nothing the answer is kept for `CHAIN_RETRY_S`, so a missing
    credential does not probe instance metadata on every request.
    """
    global _chain, _chain_missing_until
    with _chain_lock:
        if _chain is None and time.monotonic() >= _chain_missing_until:
            try:
                _chain = botocore.session.get_session().get_credentials()
            except BotoCoreError:
                _chain = None
            if _chain is None:
                _chain_missing_until = time.monotonic() + CHAIN_RETRY_S
        return _chain


def reset_default_chain() -> None:
    """Forget the resolved default chain (tests; a changed environment)."""
    global _chain, _chain_missing_until
    with _chain_lock:
        _chain = None
        _chain_missing_until = 0.0
