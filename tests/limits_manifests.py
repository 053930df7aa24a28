"""Manifests for the limits tests: one Gateway, routes each with its own limit, a priced backend."""

from __future__ import annotations

from tests.harness import gateway_yaml, http_route_yaml, route_rule

# $1000 per million tokens: the fake's "a b" chat (2 prompt + 5 completion tokens) costs $0.007.
PRICE_PER_MTOK = 1000.0
COST_OF_A_B = 7 * PRICE_PER_MTOK / 1_000_000


def _backend(name: str, port: int, pricing: str = "") -> str:
    return f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      openai: {{}}
      host: 127.0.0.1
      port: {port}
      {pricing}
  policies:
    auth:
      secretRef: {{name: fake-key}}
"""


def _policy(name: str, route: str, local: str, *, kind: str = "AIPolicy") -> str:
    api = "llmgw.dev/v1alpha1" if kind == "AIPolicy" else "agentgateway.dev/v1alpha1"
    return f"""---
apiVersion: {api}
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]
  traffic:
    rateLimit:
      local: [{local}]
"""


def limits_manifests(*, port: int, upstream_port: int, requests: int = 8, tokens: int = 100, usd: float = 0.02) -> str:
    """Routes: /v1 (requests per day, direct), /tok (tokens per day), /usd (USD per day per x-team header),
    /hourly (agentgateway's own kind: requests per hour), /open (no limit)."""
    return (
        gateway_yaml(port=port)
        + http_route_yaml(route_rule("/v1", "fake"), name="requests")
        + http_route_yaml(route_rule("/tok", "fake", rewrite=True), name="tokens")
        + http_route_yaml(route_rule("/usd", "priced", rewrite=True), name="budget")
        + http_route_yaml(route_rule("/hourly", "fake", rewrite=True), name="hourly")
        + http_route_yaml(route_rule("/open", "fake", rewrite=True), name="open")
        + _backend("fake", upstream_port)
        + _backend("priced", upstream_port, f"pricing: [{{input: {PRICE_PER_MTOK}, output: {PRICE_PER_MTOK}}}]")
        + _policy("per-day", "requests", f"{{requests: {requests}, unit: Days}}")
        + _policy("token-day", "tokens", f"{{tokens: {tokens}, unit: Days}}")
        + _policy("team-budget", "budget", f"{{usd: {usd}, unit: Days, key: ['header:x-team']}}")
        + _policy("hourly", "hourly", "{requests: 2, unit: Hours}", kind="AgentgatewayPolicy")
        + """---
apiVersion: v1
kind: Secret
metadata: {name: fake-key, namespace: default}
stringData:
  Authorization: sk-test-key
"""
    )
