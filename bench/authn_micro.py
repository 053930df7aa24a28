"""Micro-benchmark of request authentication in the router stage: CPU per request header message.

Measures `RouterRequest.on_request_headers` on a 15-header request with and without an API
key policy (Gateway-wide, 200 keys), and the pure core `authn.authenticate` alone. Run:

    PYTHONPATH=. python bench/authn_micro.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from extproc import wire
from extproc.contract import ApiKeyEntry, ApiKeyPolicyConfig, AuthnConfig
from extproc.policies import authn
from extproc.router_stage import RouterRequest
from tests.extproc_protos import GATEWAY, http_headers, make_config

KEY = "sk-bench-7f3c9a1e5b2d8f60a4c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1"
N = 20000


def per_call_us(fn: object, n: int = N) -> float:
    call = fn  # type: ignore[assignment]
    for _ in range(1000):
        call()  # type: ignore[operator]
    start = time.process_time()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    entries = [
        ApiKeyEntry(key_id=f"k/{i}", sha256=hashlib.sha256(f"sk-other-{i}".encode()).hexdigest()) for i in range(199)
    ]
    entries.append(ApiKeyEntry(key_id="k/bench", sha256=hashlib.sha256(KEY.encode()).hexdigest(), user="bench"))
    policy = ApiKeyPolicyConfig(id="bench", mode="Strict", keys=entries)
    plain = make_config()
    with_keys = dataclasses.replace(
        plain, authn={"a1": AuthnConfig(id="a1", api_key=policy)}, gateway_authn={GATEWAY: ["a1"]}
    )
    headers = {
        ":method": "POST",
        ":path": "/v1/chat/completions",
        ":authority": "gw",
        ":scheme": "http",
        "content-type": "application/json",
        "authorization": f"Bearer {KEY}",
        "user-agent": "OpenAI/Python 1.50.0",
        "accept": "application/json",
        "x-stainless-lang": "python",
        "x-stainless-package-version": "1.50.0",
        "x-stainless-os": "Linux",
        "x-stainless-arch": "x64",
        "x-stainless-runtime": "CPython",
        "x-request-id": "abc",
        "content-length": "120",
    }
    msg = http_headers(headers)
    plain_route = "httproute/default/bench/rule/0/match/0"
    route = wire.authn_route_name(plain_route, "a1")
    compiled = authn.compile_policy(policy)
    core = per_call_us(lambda: authn.authenticate(policy=compiled, headers=headers))
    off = per_call_us(
        lambda: RouterRequest(gateway=GATEWAY, config=plain).on_request_headers(msg, route_name=plain_route)
    )
    on = per_call_us(lambda: RouterRequest(gateway=GATEWAY, config=with_keys).on_request_headers(msg, route_name=route))
    print(f"authn.authenticate (200 keys): {core:.1f} us CPU per call")
    print(
        f"router stage request headers, no policy: {off:.1f} us; API key policy: {on:.1f} us; added {on - off:.1f} us"
    )


if __name__ == "__main__":
    main()
