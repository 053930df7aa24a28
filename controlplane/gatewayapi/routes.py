"""HTTPRoute rules -> RouteIRs: matches, precedence, filters, weighted backendRefs, timeouts.

Which listeners and hostnames a route attaches to is `attach.py`; filters are
`filters.py`. Pure: resources in, IR and problems out; a malformed field is a
Problem naming it, never an exception.

Gateway API failure semantics kept here: an invalid backendRef keeps its
weight and points at a cluster that does not exist (its share gets a 500, not
the valid backends); a rule with no usable backend, or with a filter that
cannot be applied, answers 500 without reaching the router stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.gatewayapi.filters import header_name_problem, parse_filters, path_problem
from controlplane.gatewayapi.grants import ReferenceGrants
from controlplane.gatewayapi.listeners import GATEWAY_API
from controlplane.ir import DEFAULT_REQUEST_TIMEOUT_S, MatchIR, RetryIR, RouteIR, StringMatchIR, WeightedBackendIR
from controlplane.resources import Problem, Resource
from extproc import wire

# Gateway API Duration (GEP-2257): 1-4 of <1-5 digits><h|m|s|ms>, each unit at most once, in that order.
_DURATION = re.compile(r"^(?:(\d{1,5})h)?(?:(\d{1,5})m(?!s))?(?:(\d{1,5})s)?(?:(\d{1,5})ms)?$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
BACKEND_KINDS = (("llmgw.dev", "AIBackend"), ("agentgateway.dev", "AgentgatewayBackend"))
POOL_KIND = ("inference.networking.k8s.io", "InferencePool")
MAX_WEIGHT = 1_000_000
# Python-only regex syntax that RE2 (Envoy) rejects: lookaround, backreferences, atomic and
# conditional groups, possessive quantifiers, \Z.
_NOT_RE2 = re.compile(r"\(\?(?:[=!#>(]|<[=!]|P=)|\\[1-9Z]|[*+?}]\+")


class ServiceRefError(ValueError):
    """A Service backendRef that cannot be resolved (plain_backends.ServiceBackends); the message says why."""


def parse_duration(text: str) -> float | None:
    """Gateway API duration (`1h2m3s4ms`) in seconds; None if malformed."""
    m = _DURATION.match(text.strip())
    if not m or not text.strip():
        return None
    h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def regex_problem(value: Any) -> str | None:
    """Why `value` is not a regular expression Envoy (RE2) accepts (None: it is one)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    try:
        re.compile(value)
    except re.error as exc:
        return f"invalid regular expression {value!r}: {exc}"
    if _NOT_RE2.search(value.replace("\\\\", "")):
        return f"{value!r} uses syntax RE2 does not support (lookaround, backreference, possessive, \\Z)"
    return None


class RouteTranslator:
    """Turns one HTTPRoute into RouteIRs (the same for every listener it attaches to)."""

    def __init__(
        self,
        route: Resource,
        backend_clusters: Mapping[str, str],
        grants: ReferenceGrants | None = None,
        *,
        plain_clusters: Mapping[str, str] | None = None,
        services: Callable[[str, str, str, Any], str] | None = None,
        pool_clusters: Mapping[str, str] | None = None,
    ) -> None:
        self.route = route
        # "<ns>/<name>" of AI backends -> cluster. The two AI backend kinds share one identity
        # (a duplicate across kinds is refused), so a ref of either kind finds a backend of either.
        self.backend_clusters = backend_clusters
        # Plain backends (no extproc): static AgentgatewayBackends by "<ns>/<name>", and the
        # resolver of Service refs (plain_backends.ServiceBackends), which raises ServiceRefError.
        self.plain_clusters = plain_clusters or {}
        self.services = services
        self.grants = grants or ReferenceGrants()
        self.pool_clusters = pool_clusters or {}  # "<ns>/<name>" of valid InferencePools -> cluster
        self.problems: list[Problem] = []

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.route.file, self.route.ref, fld, message, reason))

    def rules(self) -> list[RouteIR]:
        rules = self.route.spec.get("rules")
        if rules is None:
            rules = [{}]
        if not isinstance(rules, list):
            self.fail("spec.rules", "must be a list")
            return []
        out: list[RouteIR] = []
        for ri, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                self.fail(f"spec.rules[{ri}]", "must be a mapping")
                continue
            out.extend(self._rule(ri, rule))
        return out

    def _rule(self, ri: int, rule: Mapping[str, Any]) -> list[RouteIR]:
        fld = f"spec.rules[{ri}]"
        backends, ai = self._backends(ri, rule.get("backendRefs"))
        filters = parse_filters(rule.get("filters"), fld=fld, fail=self.fail)
        error = f"rule {ri} {filters.error}" if filters.error else ""
        if error or filters.redirect is not None:  # a redirect rule is answered by Envoy: no backend
            backends, ai = (), False
        timeout = self._timeout(fld, rule.get("timeouts"))
        retry = self._retry(fld, rule.get("retry"), rule.get("timeouts"))
        matches = rule.get("matches") or [{}]
        if not isinstance(matches, list):
            self.fail(f"{fld}.matches", "must be a list")
            return []
        out: list[RouteIR] = []
        for mi, raw in enumerate(matches):
            match = self._match(f"{fld}.matches[{mi}]", raw)
            if match is None:
                continue
            prefix_rewrite = (filters.rewrite and filters.rewrite.prefix is not None) or (
                filters.redirect and filters.redirect.prefix is not None
            )
            if prefix_rewrite and match.path_type != "PathPrefix":
                self.fail(f"{fld}.filters", "ReplacePrefixMatch needs a PathPrefix match")
                continue
            out.append(
                RouteIR(
                    name=wire.route_name(self.route.key, rule=ri, match=mi),
                    route=self.route.key,
                    match=match,
                    backends=backends,
                    ai=ai,
                    timeout_s=timeout,
                    retry=retry,
                    rewrite=filters.rewrite,
                    request_headers=filters.request_headers,
                    response_headers=filters.response_headers,
                    redirect=None if error else filters.redirect,
                    sort_key=_precedence(match, self.route, ri, mi),
                    error=f"route {self.route.key} {error}" if error else "",
                )
            )
        return out

    def _timeout(self, fld: str, timeouts: Any) -> float:
        if timeouts is None:
            return DEFAULT_REQUEST_TIMEOUT_S
        if not isinstance(timeouts, Mapping):
            self.fail(f"{fld}.timeouts", "must be a mapping (request, backendRequest)")
            return DEFAULT_REQUEST_TIMEOUT_S
        for key in ("request", "backendRequest"):
            value = timeouts.get(key)
            if value is not None and (not isinstance(value, str) or parse_duration(value) is None):
                self.fail(f"{fld}.timeouts.{key}", f"invalid duration {value!r} (e.g. 300s, 1m30s, 500ms)")
        request = timeouts.get("request")
        parsed = parse_duration(request) if isinstance(request, str) else None
        return DEFAULT_REQUEST_TIMEOUT_S if parsed is None else parsed

    def _retry(self, fld: str, retry: Any, timeouts: Any) -> RetryIR | None:
        """`rules[].retry` {codes, attempts, backoff} and `timeouts.backendRequest` (the per-try timeout)."""
        per_try = None
        if isinstance(timeouts, Mapping) and isinstance(timeouts.get("backendRequest"), str):
            per_try = parse_duration(timeouts["backendRequest"])
        if retry is None:
            return RetryIR(per_try_timeout_s=per_try) if per_try is not None else None
        if not isinstance(retry, Mapping):
            self.fail(f"{fld}.retry", "must be a mapping (codes, attempts, backoff)")
            return None
        attempts = retry.get("attempts")
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0):
            self.fail(f"{fld}.retry.attempts", "must be a non-negative integer")
            attempts = None
        codes = retry.get("codes")
        if codes is not None and (
            not isinstance(codes, list) or not all(isinstance(c, int) and 400 <= c <= 599 for c in codes)
        ):
            self.fail(f"{fld}.retry.codes", "must be a list of HTTP status codes 400-599")
            codes = None
        backoff = retry.get("backoff")
        backoff_s = parse_duration(backoff) if isinstance(backoff, str) else None
        if backoff is not None and backoff_s is None:
            self.fail(f"{fld}.retry.backoff", f"invalid duration {backoff!r}")
        return RetryIR(
            attempts=attempts,
            codes=tuple(codes) if codes is not None else None,
            backoff_s=backoff_s,
            per_try_timeout_s=per_try,
        )

    def _match(self, fld: str, raw: Any) -> MatchIR | None:
        if not isinstance(raw, Mapping):
            self.fail(fld, "must be a mapping")
            return None
        path = raw.get("path")
        if path is None:
            path = {}
        if not isinstance(path, Mapping):
            self.fail(f"{fld}.path", "must be a mapping with type and value (e.g. {type: PathPrefix, value: /v1})")
            return None
        ptype = path.get("type", "PathPrefix")
        value = path.get("value", "/")
        if ptype not in ("Exact", "PathPrefix", "RegularExpression"):
            self.fail(f"{fld}.path.type", f"unsupported path match type {ptype!r}")
            return None
        why = regex_problem(value) if ptype == "RegularExpression" else path_problem(value)
        if why:
            self.fail(f"{fld}.path.value", why)
            return None
        if ptype == "PathPrefix" and len(value) > 1:
            value = value.rstrip("/")
        headers = self._string_matches(f"{fld}.headers", raw.get("headers"), fold_case=True)
        query = self._string_matches(f"{fld}.queryParams", raw.get("queryParams"), fold_case=False)
        method = raw.get("method")
        if method is not None and (not isinstance(method, str) or method not in _METHODS):
            self.fail(f"{fld}.method", f"unknown method {method!r}")
            return None
        if headers is None or query is None:
            return None
        return MatchIR(ptype, value, headers, query, method)

    def _string_matches(self, fld: str, items: Any, *, fold_case: bool) -> tuple[StringMatchIR, ...] | None:
        """Header or query matches; a repeated name counts once (the first), as Gateway API says."""
        if items is None:
            return ()
        if not isinstance(items, list):
            self.fail(fld, "must be a list")
            return None
        out: dict[str, StringMatchIR] = {}
        for i, item in enumerate(items):
            at = f"{fld}[{i}]"
            kind = item.get("type", "Exact") if isinstance(item, Mapping) else None
            if kind not in ("Exact", "RegularExpression"):
                self.fail(at, "needs a name, a value and type Exact or RegularExpression")
                return None
            assert isinstance(item, Mapping)
            if why := header_name_problem(item.get("name")):
                self.fail(f"{at}.name", why)
                return None
            value = item.get("value")
            if not isinstance(value, str):
                self.fail(f"{at}.value", "must be a string (quote numbers and booleans)")
                return None
            if kind == "RegularExpression" and (why := regex_problem(value)):
                self.fail(f"{at}.value", why)
                return None
            name = str(item["name"])
            out.setdefault(name.lower() if fold_case else name, StringMatchIR(kind, name, value))
        return tuple(out.values())

    def _backends(self, ri: int, refs: Any) -> tuple[tuple[WeightedBackendIR, ...], bool]:
        """Weighted backends of a rule, and whether it is an AI rule (some valid backend gets traffic)."""
        fld = f"spec.rules[{ri}].backendRefs"
        if refs is None:
            return (), False
        if not isinstance(refs, list):
            self.fail(fld, "must be a list")
            return (), False
        out: list[WeightedBackendIR] = []
        kinds: dict[int, str] = {}  # index in out -> "ai" (AI backend), "pool" (InferencePool) or "plain"
        for i, ref in enumerate(refs):
            rf = f"{fld}[{i}]"
            if not isinstance(ref, Mapping):
                self.fail(rf, "must be a mapping")
                continue
            weight = ref.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
                self.fail(f"{rf}.weight", f"must be an integer 0-{MAX_WEIGHT}")
                continue
            found = self._backend_cluster(rf, ref)
            if found is None:
                out.append(WeightedBackendIR(f"invalid/{self.route.key}/rule/{ri}/backend/{i}", weight, invalid=True))
            else:
                kinds[len(out)] = found[1]
                out.append(WeightedBackendIR(found[0], weight))
        live = {k: kind for k, kind in kinds.items() if out[k].weight}
        mixed = set(live.values())
        if "plain" in mixed and len(mixed) > 1:
            # The router stage is on or off per route: a rule cannot send some requests through it.
            self.fail(
                fld,
                "mixes AI backends and plain backends (static AgentgatewayBackend, Service) in one rule; "
                "llmgw processes a route either as AI traffic or not at all: split the rule",
            )
            return (), False
        if mixed == {"ai", "pool"}:
            # The two need different routes in Envoy (host rewrite, retries, the endpoint picker).
            self.fail(
                fld,
                "mixes InferencePools with AI backends in one rule; llmgw cannot split one rule across both "
                "(use two rules, or two HTTPRoutes)",
                "Unsupported",
            )
            return (), False
        if not any(b.weight and not b.invalid for b in out):
            return (), False  # every request of this rule gets the 500
        return tuple(b for b in out if b.weight), bool(mixed - {"plain"})

    def _backend_cluster(self, rf: str, ref: Mapping[str, Any]) -> tuple[str, str] | None:
        """(cluster, "ai" | "pool" | "plain") of a valid backendRef; None (and a Problem) for an invalid one.

        AI backends and InferencePools are AI traffic (the router stage processes their routes);
        plain backends are Envoy's alone."""
        name = ref.get("name")
        if not isinstance(name, str) or not name:
            self.fail(f"{rf}.name", "is required (a string)")
            return None
        group, kind = ref.get("group", ""), ref.get("kind", "Service")
        pool = (group, kind) == POOL_KIND
        service = group in ("", "core") and kind == "Service" and self.services is not None
        if not pool and not service and not any(group == g and kind == k for g, k in BACKEND_KINDS):
            self.fail(
                f"{rf}.kind",
                f"{group or 'core'}/{kind} backends are not supported by llmgw "
                "(use an AIBackend, an AgentgatewayBackend, a Service or an InferencePool)",
                "InvalidKind",
            )
            return None
        ns = ref.get("namespace") or self.route.namespace
        if not isinstance(ns, str):
            self.fail(f"{rf}.namespace", "must be a string")
            return None
        permitted = self.grants.permits(
            from_group=GATEWAY_API,
            from_kind="HTTPRoute",
            from_ns=self.route.namespace,
            to_ns=ns,
            to_group=str(group),
            to_kind=str(kind),
            to_name=name,
        )
        if not permitted:
            self.fail(
                f"{rf}.namespace",
                f"{kind} {ns}/{name} is in another namespace: that needs a ReferenceGrant in {ns}",
                "RefNotPermitted",
            )
            return None
        if pool:
            # An InferencePool's backendRef port is ignored: the pool's targetPorts say where its pods listen.
            cluster = self.pool_clusters.get(f"{ns}/{name}")
            if cluster is None:
                self.fail(rf, f"{kind} {ns}/{name} not found or invalid", "BackendNotFound")
                return None
            return cluster, "pool"
        if service:
            assert self.services is not None
            try:
                return self.services(rf, ns, name, ref.get("port")), "plain"
            except ServiceRefError as exc:
                self.fail(rf, str(exc), "BackendNotFound")
                return None
        cluster = self.backend_clusters.get(f"{ns}/{name}")
        if cluster is not None:
            return cluster, "ai"
        plain = self.plain_clusters.get(f"{ns}/{name}") if kind == "AgentgatewayBackend" else None
        if plain is not None:
            return plain, "plain"
        self.fail(rf, f"{kind} {ns}/{name} not found or invalid", "BackendNotFound")
        return None


_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def _precedence(match: MatchIR, route: Resource, rule: int, index: int) -> tuple[object, ...]:
    """Gateway API precedence: exact path, (regex: Envoy Gateway's choice), longest prefix, method,
    #headers, #query, oldest route, route name, rule and match order."""
    return (
        _PATH_RANK[match.path_type],
        -len(match.path),
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query),
        route.creation or "~",
        route.key,
        rule,
        index,
    )
