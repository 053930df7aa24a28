"""Route configurations: matches, rewrites, header modifiers, weighted clusters and the failover retry policy."""

from __future__ import annotations

from typing import Any

import orjson

from controlplane.ir import HeaderModIR, ListenerIR, MatchIR, RouteIR
from controlplane.xds import jwt_authn, names, ratelimit
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from extproc import wire


def route_config_resource(
    listener: ListenerIR, providers: dict[str, int], *, host_rewrite: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """`host_rewrite`: plain backend clusters whose host name becomes the Host header."""
    return {
        "name": listener.name,
        # Gateway API hostnames never carry a port; "host:8080" must match "host" and "*.example.com".
        "ignore_port_in_host_matching": True,
        # The share of an invalid backendRef deliberately names a cluster that does not exist.
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": vh.name,
                "domains": list(vh.domains),
                "routes": [
                    out
                    for r in vh.routes
                    for out in (
                        *authn_guard(r),
                        _route(r, providers, body_limit=listener.max_body_bytes, host_rewrite=host_rewrite),
                    )
                ],
            }
            for vh in listener.virtual_hosts
        ],
        "request_headers_to_remove": ["x-llmgw-provider"],
    }


def _string_match(kind: str, value: str) -> dict[str, Any]:
    return {"exact": value} if kind == "Exact" else {"safe_regex": {"regex": value}}


def _match(m: MatchIR) -> dict[str, Any]:
    out: dict[str, Any]
    if m.path_type == "Exact":
        out = {"path": m.path}
    elif m.path_type == "RegularExpression":
        out = {"safe_regex": {"regex": m.path}}
    elif m.path == "/":
        out = {"prefix": "/"}
    else:
        out = {"path_separated_prefix": m.path}
    headers = [{"name": h.name, "string_match": _string_match(h.kind, h.value)} for h in m.headers]
    if m.method:
        headers.append({"name": ":method", "string_match": {"exact": m.method}})
    if headers:
        out["headers"] = headers
    if m.query:
        out["query_parameters"] = [{"name": q.name, "string_match": _string_match(q.kind, q.value)} for q in m.query]
    return out


def _header_values(mod: HeaderModIR) -> list[dict[str, Any]]:
    # Gateway API values are literal; Envoy would read "%...%" as a formatter command.
    def value(v: str) -> str:
        return v.replace("%", "%%")

    sets = [
        {"header": {"key": k, "value": value(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in mod.set
    ]
    adds = [{"header": {"key": k, "value": value(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"} for k, v in mod.add]
    return sets + adds


def _rewrite(r: RouteIR) -> dict[str, Any]:
    """URLRewrite path as Envoy route action fields (Gateway API ReplacePrefixMatch table)."""
    rw = r.rewrite
    if rw is None:
        return {}
    if rw.full_path is not None:
        return {"regex_rewrite": {"pattern": {"regex": "^/.*$"}, "substitution": rw.full_path}}
    if rw.prefix is None:
        return {}
    return _replace_prefix(r.match.path, rw.prefix)


def _replace_prefix(prefix: str, replacement: str) -> dict[str, Any]:
    """ReplacePrefixMatch of the matched `prefix` by `replacement`: route and redirect actions share the fields."""
    replacement = replacement.rstrip("/")
    # `prefix` is normalized: no trailing slash unless "/"
    if prefix == "/":
        return {"prefix_rewrite": replacement + "/"}
    if not replacement:
        # /foo, /foo/ and /foo//bar -> /, /, /bar
        pattern, substitution = "^" + _re_escape(prefix) + "/*(.*)$", "/\\1"
    else:
        # /foo, /foo/ and /foo/bar -> R, R/ and R/bar
        pattern, substitution = "^" + _re_escape(prefix) + "(/.*)?$", replacement + "\\1"
    return {"regex_rewrite": {"pattern": {"regex": pattern}, "substitution": substitution}}


_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


def _redirect(r: RouteIR) -> dict[str, Any]:
    """RequestRedirect as Envoy's redirect action (Envoy answers; no cluster, no extproc)."""
    rd = r.redirect
    assert rd is not None
    out: dict[str, Any] = {"response_code": _REDIRECT_CODES[rd.status]}
    if rd.scheme:
        out["scheme_redirect"] = rd.scheme
    if rd.hostname:
        out["host_redirect"] = rd.hostname
    if rd.port is not None:
        out["port_redirect"] = rd.port
    if rd.full_path is not None:
        out["path_redirect"] = rd.full_path
    elif rd.prefix is not None:
        out.update(_replace_prefix(r.match.path, rd.prefix))
    return out


def _route(
    r: RouteIR, providers: dict[str, int], *, body_limit: int, host_rewrite: frozenset[str] | set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "match": _match(r.match)}
    if r.redirect is not None:
        out["redirect"] = _redirect(r)
    elif not r.backends:
        out["direct_response"] = {
            "status": 500,
            "body": {
                "inline_string": orjson.dumps(
                    {
                        "error": {
                            "message": r.error or f"route {r.route} has no valid backend",
                            "type": "server_error",
                            "code": "invalid_route" if r.error else "no_valid_backend",
                            "param": None,
                        }
                    }
                ).decode()
            },
        }
    else:
        action: dict[str, Any] = {"timeout": duration(r.timeout_s)}
        if len(r.backends) == 1:
            cluster = r.backends[0].cluster
            action["cluster"] = wire.direct_cluster(cluster) if r.direct_provider else cluster
        else:
            action["weighted_clusters"] = {"clusters": [{"name": b.cluster, "weight": b.weight} for b in r.backends]}
        if any(b.invalid for b in r.backends):
            # The share of an invalid backendRef goes to a cluster that does not exist: 500 (Gateway API).
            action["cluster_not_found_response_code"] = "INTERNAL_SERVER_ERROR"
        action.update(_rewrite(r))
        retry = retry_policy(r, max(providers.get(b.cluster, 1) for b in r.backends))
        if retry is not None:
            action["retry_policy"] = retry
            out["request_body_buffer_limit"] = str(MAX_RETRY_BUFFER)
        rw = r.rewrite
        if rw and rw.hostname:
            action["host_rewrite_literal"] = rw.hostname
        elif r.ai or any(b.cluster in host_rewrite for b in r.backends):
            action["auto_host_rewrite"] = True
        out["route"] = action
    if r.request_headers:
        if r.request_headers.set or r.request_headers.add:
            out["request_headers_to_add"] = _header_values(r.request_headers)
        if r.request_headers.remove:
            out["request_headers_to_remove"] = list(r.request_headers.remove)
    if r.response_headers:
        if r.response_headers.set or r.response_headers.add:
            out["response_headers_to_add"] = _header_values(r.response_headers)
        if r.response_headers.remove:
            out["response_headers_to_remove"] = list(r.response_headers.remove)
    if r.ai and r.backends:
        # The extproc buffers the whole request and response of AI routes; the connection's own
        # buffer stays small (Limits.connection_buffer_bytes). Larger bodies get 413.
        out["request_body_buffer_limit"] = str(max(body_limit, int(out.get("request_body_buffer_limit", 0))))
    if rate_limit_filters := ratelimit.route_filter_config(r):
        out.setdefault("typed_per_filter_config", {}).update(rate_limit_filters)
    if not r.ai:
        out.setdefault("typed_per_filter_config", {}).update(
            {
                names.ROUTER_STAGE_FILTER: {
                    "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                    "disabled": True,
                }
            }
        )
    jwt = jwt_authn.per_route(r)
    if jwt is not None:
        out.setdefault("typed_per_filter_config", {})[jwt_authn.FILTER_NAME] = jwt
    return out


GUARD_MESSAGE = "This request is not authenticated for this route (a missing or wrong API key or token)."


def authn_guard(r: RouteIR) -> list[dict[str, Any]]:
    """A 401 in front of a route that authenticates, for requests not authenticated for it.

    The guard has the route's match plus: `x-llmgw-authn` (missing counts as
    empty) does not list the route's authentication id. The router stage
    authenticates on the request headers against every authentication of the
    Gateway and sets that header to the ids the caller satisfies:
    - on the first route lookup the header is absent (stripped before routing),
      so the guard matches; the router stage sees the guard's name, knows which
      route it guards, authenticates, sets the header and has Envoy match again;
    - model routing picks the final route only after the body: a request moved
      to a route it was not authenticated for meets that route's guard;
    - a worker without this authentication in its config sets no header: 401.
    So no request reaches the route without the router stage's check (fail
    closed). Direct routes (gatewayapi/direct.py) cannot change after the
    headers; the router stage checks them itself and they need no guard.
    """
    aid = wire.authn_of_route_name(r.name)
    if aid is None or not r.backends or not r.ai or r.direct_provider:
        return []
    match = _match(r.match)
    match["headers"] = [
        *match.get("headers", []),
        {
            "name": wire.AUTHN_HEADER,
            "string_match": {"contains": f",{aid},"},
            "invert_match": True,
            "treat_missing_header_as_empty": True,
        },
    ]
    body = {
        "error": {"message": GUARD_MESSAGE, "type": "authentication_error", "code": "unauthenticated", "param": None}
    }
    guard: dict[str, Any] = {
        "name": r.name + wire.AUTHN_GUARD_SUFFIX,
        "match": match,
        "direct_response": {"status": 401, "body": {"inline_string": orjson.dumps(body).decode()}},
    }
    jwt = jwt_authn.per_route(r)
    if jwt is not None:  # on the first lookup Envoy checks the token for the guarded route
        guard["typed_per_filter_config"] = {jwt_authn.FILTER_NAME: jwt}
    return [guard]


def _re_escape(path: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in path)


DEFAULT_RETRIABLE_CODES = (429,)
MAX_RETRY_BUFFER = 10 * 1024 * 1024


def retry_policy(r: RouteIR, providers: int) -> dict[str, Any] | None:
    """Failover within the same client request, on by default for backends with several providers.

    A failed attempt (connect failure, reset, 5xx, 429, or no response headers
    within the per-try timeout) is retried on another provider, the next
    priority group first (previous_priorities) and never the same provider
    twice in a row (previous_hosts). Envoy retries only before any response byte
    reached the client. HTTPRoute `retry` and `timeouts.backendRequest` override.
    """
    spec = r.retry
    if providers < 2 and (spec is None or spec.attempts is None):
        return None
    attempts = spec.attempts if spec and spec.attempts is not None else providers - 1
    if attempts <= 0:
        return None
    if spec and spec.codes is not None:
        retry_on, codes = "reset,connect-failure,refused-stream,retriable-status-codes", list(spec.codes)
    else:
        retry_on, codes = (
            "5xx,reset,connect-failure,refused-stream,retriable-status-codes",
            list(DEFAULT_RETRIABLE_CODES),
        )
    backoff = spec.backoff_s if spec and spec.backoff_s is not None else 0.01
    policy: dict[str, Any] = {
        "retry_on": retry_on,
        "retriable_status_codes": codes,
        "num_retries": attempts,
        "retry_back_off": {"base_interval": duration(backoff), "max_interval": duration(max(backoff * 4, 0.05))},
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": _T + "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 1,
            },
        },
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }
        ],
        # LEAST_REQUEST picks the host just tried about half the time when two providers tie; each
        # rejected pick costs only a new pick in Envoy, so allow many before it gives up and
        # retries the failed provider (5 failed one retry in ~60 with two providers in a group).
        "host_selection_retry_max_attempts": 20,
    }
    if spec and spec.per_try_timeout_s:
        policy["per_try_timeout"] = duration(spec.per_try_timeout_s)
    return policy
