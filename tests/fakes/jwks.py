"""A local identity provider for JWT tests: keys made here, tokens signed with PyJWT, a JWKS over HTTP.

`Issuer` holds an RSA (RS256) or EC (ES256) key pair generated at start, signs
tokens with any claims (`token(...)`, expired ones included) and gives its
public keys as a JSON Web Key Set (`jwks_json`). `JwksServer` serves that set
at `/.well-known/jwks.json` on 127.0.0.1 and counts the fetches, as a remote
IdP would for Envoy's remote_jwks.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class Issuer:
    def __init__(self, issuer: str, *, kid: str, algorithm: str = "RS256") -> None:
        self.issuer, self.kid, self.algorithm = issuer, kid, algorithm
        if algorithm == "RS256":
            self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._jwk_of = jwt.algorithms.RSAAlgorithm.to_jwk
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            self._jwk_of = jwt.algorithms.ECAlgorithm.to_jwk

    def token(self, *, sub: str, aud: str | None, expires_in: float = 600, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "sub": sub, "iat": now, "exp": now + int(expires_in), **claims}
        if aud is not None:
            payload["aud"] = aud
        return jwt.encode(payload, self.key, algorithm=self.algorithm, headers={"kid": self.kid})

    def jwks_json(self) -> str:
        jwk = json.loads(self._jwk_of(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return json.dumps({"keys": [jwk]})


class JwksServer:
    """Serves one issuer's JWKS over plain HTTP; `fetches` counts the requests."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = outer.issuer.jwks_json().encode()
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="jwks", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def start(self) -> JwksServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
