"""HTTPRoute RequestRedirect through the real Envoy: the gateway answers the redirect, no backend is asked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml

pytestmark = pytest.mark.integration

RULES = """    - matches: [{path: {type: PathPrefix, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: new.example, port: 8443, statusCode: 301,
                            path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - matches: [{path: {type: Exact, value: /moved}}]
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /here}}}]
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + http_route_yaml(RULES))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/old/chat/completions?x=1", 301, "https://new.example:8443/v2/chat/completions?x=1"),
        ("/old", 301, "https://new.example:8443/v2"),
        ("/moved", 302, "http://gw.example/here"),
    ],
)
def test_redirects(gateway: GatewayProcess, path: str, status: int, location: str) -> None:
    reply = httpx.get(gateway.url + path, headers={"host": "gw.example"}, timeout=10)
    assert reply.status_code == status
    assert reply.headers["location"] == location
