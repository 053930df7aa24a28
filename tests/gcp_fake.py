"""A local Google OAuth token endpoint and a service-account key made at test time.

The gateway's `gcp` credential signs a JWT with the service account's private key and
trades it at the key's `token_uri` for an access token. Pointing `token_uri` at this
server (127.0.0.1) lets tests check the real exchange: the assertion must verify against
the public half of the key generated here, and the access tokens it hands out are
numbered so a test can tell a refreshed token from the first one.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_EMAIL = "llmgw-test@test-project.iam.gserviceaccount.com"


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass
class Grant:
    """One token request as received: the JWT's header and claims, and whether the signature verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signature_ok: bool


@dataclass
class FakeTokenServer:
    expires_in: int = 3600
    fail_status: int | None = None  # answer every request with this error
    grants: list[Grant] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-oauth", daemon=True)

    def start(self) -> FakeTokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def service_account(self, **overrides: Any) -> dict[str, Any]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "kid-1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }
        return {**info, **overrides}

    def verify(self, assertion: str) -> Grant:
        head, body, sig = assertion.split(".")
        try:
            self.key.public_key().verify(_b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
            ok = True
        except InvalidSignature:
            ok = False
        return Grant(json.loads(_b64url(head)), json.loads(_b64url(body)), ok)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                grant = None
                if form.get("grant_type") == [JWT_BEARER] and form.get("assertion"):
                    grant = server.verify(form["assertion"][0])
                with server._lock:
                    if grant is not None:
                        server.grants.append(grant)
                    if server.fail_status is not None or grant is None or not grant.signature_ok:
                        status = server.fail_status or 400
                        body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                    else:
                        status = 200
                        token = f"ya29.fake-token-{len(server.issued) + 1}"
                        server.issued.append(token)
                        body = {"access_token": token, "expires_in": server.expires_in, "token_type": "Bearer"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
