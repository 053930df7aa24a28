"""A local Microsoft Entra ID token endpoint (HTTPS) and managed-identity endpoints (HTTP), for tests.

The gateway's `azure` credential uses the real `azure-identity` (and MSAL under it); these
fakes speak the wire protocol those libraries expect, so tests exercise the real flows:

- Entra ID, over HTTPS with a certificate from a test CA made by `trustme` (trust it with
  `REQUESTS_CA_BUNDLE=<ca_file>`; point the library at it with
  `AZURE_AUTHORITY_HOST=<authority_host>`): `GET /{tenant}/v2.0/.well-known/openid-configuration`
  (MSAL's tenant discovery) and `POST /{tenant}/oauth2/v2.0/token` (client credentials with a
  `client_secret` or a `client_assertion`, i.e. a workload identity's federated token).
- Managed identity, over plain HTTP like the real ones: the IMDS path
  `GET /metadata/identity/oauth2/token` (`AZURE_POD_IDENTITY_AUTHORITY_HOST=<msi_url>`) and the
  App Service path `GET /msi/token` (`IDENTITY_ENDPOINT=<app_service_endpoint>`,
  `IDENTITY_HEADER=<identity_header>`).

Every token request is recorded (`grants`, `mi_requests`) with what identifies the caller;
tokens are numbered (`entra-at-1`, ...) and `issued` keeps when each was minted and when it
expires, so tests can check a token was replaced before it expired. `max_in_flight` is the
largest number of token requests ever served at once (`latency` widens the window).
`reject_secrets` makes the endpoint refuse those client secrets with an AADSTS error that
echoes the secret back, to prove the gateway scrubs it; `fail` makes every token request fail.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
IDENTITY_HEADER = "fake-identity-header-value"


@dataclass(frozen=True)
class Grant:
    """One request to the Entra token endpoint: the tenant in its path, its form fields, the token issued."""

    tenant: str
    form: dict[str, str]
    token: str | None  # None when the request was refused

    @property
    def scope(self) -> str:
        return self.form.get("scope", "")


@dataclass(frozen=True)
class MIRequest:
    """One request to a managed-identity endpoint: `imds` or `app_service`, query, headers, token issued."""

    style: str
    query: dict[str, str]
    headers: dict[str, str]
    token: str | None


@dataclass(frozen=True)
class Issued:
    token: str
    issued_at: float
    expires_at: float


@dataclass
class FakeEntra:
    tmpdir: Path
    expires_in: int = 3600
    latency: float = 0.0  # seconds each token request takes
    fail: tuple[int, str, str] | None = None  # (status, error, description) for every token request
    reject_secrets: set[str] = field(default_factory=set)
    grants: list[Grant] = field(default_factory=list)
    mi_requests: list[MIRequest] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)
    failures: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self.ca = trustme.CA()
        self.ca_file = self.tmpdir / "entra-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._lock = threading.Condition()  # notified whenever a token is minted
        self._in_flight = 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        self._https = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._https.socket = ctx.wrap_socket(self._https.socket, server_side=True)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._threads = [
            threading.Thread(target=server.serve_forever, name=f"fake-entra-{i}", daemon=True)
            for i, server in enumerate((self._https, self._http))
        ]

    # -- lifecycle and addresses --------------------------------------------------------

    def start(self) -> FakeEntra:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)

    @property
    def authority_host(self) -> str:
        return f"https://127.0.0.1:{self._https.server_address[1]}"

    @property
    def msi_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def app_service_endpoint(self) -> str:
        return f"{self.msi_url}/msi/token"

    def entra_env(self) -> dict[str, str]:
        """Environment that makes azure-identity use (and trust) this Entra endpoint."""
        return {"AZURE_AUTHORITY_HOST": self.authority_host, "REQUESTS_CA_BUNDLE": str(self.ca_file)}

    def workload_env(self, *, client_id: str, tenant_id: str, token: str) -> dict[str, str]:
        """The variables the AKS workload identity webhook injects, with `token` as the federated token."""
        path = self.tmpdir / f"federated-token-{client_id}"
        path.write_text(token)
        return {
            **self.entra_env(),
            "AZURE_CLIENT_ID": client_id,
            "AZURE_TENANT_ID": tenant_id,
            "AZURE_FEDERATED_TOKEN_FILE": str(path),
        }

    def imds_env(self) -> dict[str, str]:
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.msi_url}

    def app_service_env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.app_service_endpoint, "IDENTITY_HEADER": IDENTITY_HEADER}

    def clear(self) -> None:
        with self._lock:
            self.grants.clear()
            self.mi_requests.clear()
            self.issued.clear()
            self.failures = 0
            self.max_in_flight = 0

    # -- serving ----------------------------------------------------------------------

    def wait_issued(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` tokens have been minted; fail after `timeout` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.issued) >= count, timeout):
                raise AssertionError(f"only {len(self.issued)} of {count} tokens issued within {timeout}s")

    def _mint(self) -> Issued:
        with self._lock:
            now = time.time()
            item = Issued(f"entra-at-{len(self.issued) + 1}", now, now + self.expires_in)
            self.issued.append(item)
            self._lock.notify_all()
            return item

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if self.latency:
            time.sleep(self.latency)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if url.path.endswith("/v2.0/.well-known/openid-configuration"):
                    base = f"{fake.authority_host}/{parts[0]}"
                    self._send(
                        200,
                        {
                            "issuer": f"{base}/v2.0",
                            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                            "token_endpoint": f"{base}/oauth2/v2.0/token",
                            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                            "jwks_uri": f"{base}/discovery/v2.0/keys",
                            "tenant_region_scope": "EU",
                        },
                    )
                    return
                if url.path in ("/metadata/identity/oauth2/token", "/msi/token"):
                    self._managed_identity(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
                    return
                self._send(404, {"error": "not_found"})

            def _managed_identity(self, path: str, query: dict[str, str]) -> None:
                style = "imds" if path.startswith("/metadata") else "app_service"
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake._enter()
                try:
                    refusal: tuple[int, dict[str, Any]] | None = None
                    if style == "imds" and headers.get("metadata") != "true":
                        refusal = 400, {"error": "invalid_request", "error_description": "Metadata header"}
                    elif style == "app_service" and headers.get("x-identity-header") != IDENTITY_HEADER:
                        refusal = 401, {"statusCode": 401, "message": "bad X-IDENTITY-HEADER"}
                    elif fake.fail is not None:
                        status, error, description = fake.fail
                        refusal = status, {"error": error, "error_description": description}
                    if refusal is not None:
                        with fake._lock:
                            fake.mi_requests.append(MIRequest(style, query, headers, None))
                            fake.failures += 1
                        self._send(*refusal)
                        return
                    item = fake._mint()
                    with fake._lock:
                        fake.mi_requests.append(MIRequest(style, query, headers, item.token))
                    payload: dict[str, Any] = {
                        "access_token": item.token,
                        "expires_on": str(int(item.expires_at)),
                        "resource": query.get("resource", ""),
                        "token_type": "Bearer",
                    }
                    if style == "imds":
                        payload["expires_in"] = str(fake.expires_in)
                    self._send(200, payload)
                finally:
                    fake._leave()

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                if not url.path.endswith("/oauth2/v2.0/token"):
                    self._send(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                tenant = url.path.strip("/").split("/")[0]
                fake._enter()
                try:
                    secret = form.get("client_secret")
                    failure = fake.fail
                    if failure is None and secret is not None and secret in fake.reject_secrets:
                        failure = (
                            401,
                            "invalid_client",
                            f"AADSTS7000215: Invalid client secret provided ('{secret}'). Trace ID: 0000",
                        )
                    if failure is not None:
                        status, error, description = failure
                        with fake._lock:
                            fake.grants.append(Grant(tenant, form, None))
                            fake.failures += 1
                        self._send(status, {"error": error, "error_description": description, "error_codes": [1]})
                        return
                    item = fake._mint()
                    with fake._lock:
                        fake.grants.append(Grant(tenant, form, item.token))
                    self._send(
                        200,
                        {
                            "token_type": "Bearer",
                            "expires_in": fake.expires_in,
                            "ext_expires_in": fake.expires_in,
                            "access_token": item.token,
                        },
                    )
                finally:
                    fake._leave()

        return Handler
