"""Route configurations: matches, rewrites, header modifiers, weighted clusters and the failover retry policy."""

from __future__ import annotations

from typing import Any

import orjson

from controlplane.ir import HeaderModIR, ListenerIR, MatchIR, PoolIR, RouteIR
from controlplane.xds import names
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from controlplane.xds.inference_pool import PICKER_FILTER, picker_route_config, pool_retry_policy, served_header
from extproc import wire


def route_config_resource(
    listener: ListenerIR, providers: dict[str, int], pools: dict[str, PoolIR] | None = None
) -> dict[str, Any]:
    """`pools`: the InferencePools by cluster name (routes to them call their endpoint picker)."""
    pools = pools or {}
    pickers = any(p.picker is not None for p in pools.values())
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
                    _pool_route(_route(r, providers, body_limit=listener.max_body_bytes), r, pools, pickers)
                    for r in vh.routes
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
    replacement = rw.prefix.rstrip("/")
    prefix = r.match.path  # normalized: no trailing slash unless "/"
    if prefix == "/":
        return {"prefix_rewrite": replacement + "/"}
    if not replacement:
        # /foo, /foo/ and /foo//bar -> /, /, /bar
        pattern, substitution = "^" + _re_escape(prefix) + "/*(.*)$", "/\\1"
    else:
        # /foo, /foo/ and /foo/bar -> R, R/ and R/bar
        pattern, substitution = "^" + _re_escape(prefix) + "(/.*)?$", replacement + "\\1"
    return {"regex_rewrite": {"pattern": {"regex": pattern}, "substitution": substitution}}


def _route(r: RouteIR, providers: dict[str, int], *, body_limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "match": _match(r.match)}
    if not r.backends:
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
        elif r.ai:
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
    if not r.ai:
        out["typed_per_filter_config"] = {
            names.ROUTER_STAGE_FILTER: {
                "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                "disabled": True,
            }
        }
    return out


def _pool_route(out: dict[str, Any], r: RouteIR, pools: dict[str, PoolIR], pickers: bool) -> dict[str, Any]:
    """Routes to InferencePools: the picker per pool (per weighted cluster), the served endpoint, retries."""
    targets = [pools.get(b.cluster) for b in r.backends]
    action = out.get("route")
    if action is None or not any(targets):
        if pickers:
            out.setdefault("typed_per_filter_config", {})[PICKER_FILTER] = picker_route_config(None)
        return out
    action.pop("auto_host_rewrite", None)  # the client's Host goes to the model server, as for a Service
    if "retry_policy" not in action:
        action["retry_policy"] = pool_retry_policy()
    out["response_headers_to_add"] = [*out.get("response_headers_to_add", []), served_header()]
    if pickers:
        weighted = action.get("weighted_clusters")
        if weighted is None:
            out.setdefault("typed_per_filter_config", {})[PICKER_FILTER] = picker_route_config(targets[0])
        else:
            for entry, pool in zip(weighted["clusters"], targets, strict=True):
                entry["typed_per_filter_config"] = {PICKER_FILTER: picker_route_config(pool)}
    return out


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
