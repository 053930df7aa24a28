"""Which routes skip the attempt stage (controlplane/gatewayapi/direct.py), and why not the others."""

from __future__ import annotations

from pathlib import Path

from controlplane.compile import compile_paths
from controlplane.ir import RouteIR
from tests.harness import gateway_yaml, http_route_yaml

BACKENDS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: one}
spec:
  ai: {provider: {openai: {}, host: 127.0.0.1, port: 9000}}
  policies: {auth: {key: sk-one}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: two}
spec:
  ai: {provider: {openai: {model: m2}, host: 127.0.0.1, port: 9001}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: group}
spec:
  ai:
    groups:
      - providers:
          - {name: a, openai: {}, host: 127.0.0.1, port: 9002}
          - {name: b, openai: {}, host: 127.0.0.1, port: 9003}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: claude}
spec:
  ai: {provider: {anthropic: {}, host: 127.0.0.1, port: 9004}}
  policies: {auth: {key: sk-ant}}
"""
BASE = gateway_yaml(port=8080) + BACKENDS + http_route_yaml()  # the route's rules follow


def _routes(tmp_path: Path, rules: str) -> dict[str, RouteIR]:
    (tmp_path / "m.yaml").write_text(BASE + rules)
    compiled = compile_paths([tmp_path])
    assert compiled.ok, compiled.problems
    assert compiled.ir is not None
    [listener] = compiled.ir.listeners
    return {r.match.path: r for r in listener.virtual_hosts[-1].routes}


def _rule(path: str, backend: str, extra: str = "") -> str:
    return (
        f"    - matches: [{{path: {{type: PathPrefix, value: {path}}}{extra}}}]\n"
        f"      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: {backend}}}]\n"
    )


def test_single_openai_provider_route_is_direct(tmp_path: Path) -> None:
    routes = _routes(tmp_path, _rule("/v1", "one") + _rule("/two", "two"))
    assert routes["/v1"].direct_provider == "default/one/openai"
    assert routes["/v1"].name.endswith("/direct")
    assert routes["/two"].direct_provider == "default/two/openai"  # a model override is done by the router stage


def test_model_routing_makes_that_route_and_later_ones_indirect(tmp_path: Path) -> None:
    rules = _rule("/v1", "two", ", headers: [{name: x-gateway-model-name, value: m2}]") + _rule("/v1", "one")
    (tmp_path / "m.yaml").write_text(BASE + rules)
    compiled = compile_paths([tmp_path])
    assert compiled.ir is not None
    routes = compiled.ir.listeners[0].virtual_hosts[-1].routes
    assert [r.direct_provider for r in routes] == [None, None]  # the default route may lose to the model route


def test_routes_before_any_model_match_stay_direct(tmp_path: Path) -> None:
    rules = _rule("/v1/embeddings", "one") + _rule("/v1", "two", ", headers: [{name: x-gateway-model-name, value: m2}]")
    routes = _routes(tmp_path, rules)
    assert routes["/v1/embeddings"].direct_provider == "default/one/openai"
    assert routes["/v1"].direct_provider is None


def test_failover_groups_translation_rewrites_and_weights_are_not_direct(tmp_path: Path) -> None:
    rewrite = (
        "    - matches: [{path: {type: PathPrefix, value: /openai}}]\n"
        "      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n"
        "      backendRefs: [{group: llmgw.dev, kind: AIBackend, name: one}]\n"
    )
    weights = (
        "    - matches: [{path: {type: PathPrefix, value: /split}}]\n"
        "      backendRefs:\n"
        "        - {group: llmgw.dev, kind: AIBackend, name: one, weight: 1}\n"
        "        - {group: llmgw.dev, kind: AIBackend, name: two, weight: 1}\n"
    )
    routes = _routes(tmp_path, _rule("/group", "group") + _rule("/claude", "claude") + rewrite + weights)
    assert all(r.direct_provider is None for r in routes.values()), routes


def test_direct_routes_reach_the_extproc_config_and_a_twin_cluster(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(BASE + _rule("/v1", "one"))
    compiled = compile_paths([tmp_path])
    assert compiled.extproc is not None and compiled.envoy is not None
    assert compiled.extproc.direct_routes == {"httproute/default/r/rule/0/match/0/direct": "default/one/openai"}
    clusters = {c["name"]: c for c in compiled.envoy.clusters}
    twin = clusters["aibackend-direct/default/one"]
    filters = twin["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    # No attempt stage; only the removal of a provider's copy of the answered marker, then the codec.
    assert [f["name"] for f in filters["http_filters"]] == [
        "llmgw.strip_answered_marker",
        "envoy.filters.http.upstream_codec",
    ]
    assert "sk-one" not in str(compiled.envoy)
