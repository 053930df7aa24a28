"""IR -> Envoy resources as plain dicts in Envoy's JSON shape, then protos.

Dicts keep the translation readable and make the golden files diffable; the
`to_protos` step parses them into upb messages, which also catches a field
name Envoy does not know. No secret is ever written here: credentials travel
to the extproc over its own channel.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

# Registering every type that may appear inside an Any.
import envoy.config.cluster.v3.cluster_pb2 as cluster_pb2
import envoy.config.endpoint.v3.endpoint_pb2 as endpoint_pb2
import envoy.config.listener.v3.listener_pb2 as listener_pb2
import envoy.config.route.v3.route_pb2 as route_pb2
import envoy.extensions.access_loggers.file.v3.file_pb2
import envoy.extensions.access_loggers.filters.cel.v3.cel_pb2
import envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.http.upstream_codec.v3.upstream_codec_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.http.early_header_mutation.header_mutation.v3.header_mutation_pb2
import envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2
import envoy.extensions.retry.priority.previous_priorities.v3.previous_priorities_config_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.gatewayapi.direct import direct_cluster
from controlplane.ir import IR, BackendIR, HeaderModIR, ListenerIR, MatchIR, ProviderIR, RouteIR, VirtualHostIR
from controlplane.limits import H2_CONNECTION_WINDOW, H2_MAX_CONCURRENT_STREAMS, H2_STREAM_WINDOW, Limits
from controlplane.xds import names
from extproc.cooldown import ORACLE_PATH, PAUSABLE_KEY, pause_key

_T = "type.googleapis.com/"
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
EXTPROC_MESSAGE_TIMEOUT = "5s"


@dataclass(frozen=True)
class EnvoyResources:
    """One consistent set of resources (a snapshot's content) as JSON-shaped dicts."""

    listeners: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        return {
            names.TYPE_LISTENER: self.listeners,
            names.TYPE_ROUTE: self.routes,
            names.TYPE_CLUSTER: self.clusters,
            names.TYPE_ENDPOINT: self.endpoints,
        }


_PROTO_OF = {
    names.TYPE_LISTENER: listener_pb2.Listener,
    names.TYPE_ROUTE: route_pb2.RouteConfiguration,
    names.TYPE_CLUSTER: cluster_pb2.Cluster,
    names.TYPE_ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}


def to_protos(resources: EnvoyResources) -> dict[str, list[Message]]:
    """Parse every dict into its proto; raises json_format.ParseError on a bad field."""
    out: dict[str, list[Message]] = {}
    for type_url, items in resources.by_type().items():
        cls = _PROTO_OF[type_url]
        out[type_url] = [json_format.ParseDict(item, cls()) for item in items]
    return out


def translate(
    ir: IR,
    *,
    system_ca_file: str = SYSTEM_CA_FILE,
    pause_oracle: tuple[str, int] | None = None,
    limits: Limits | None = None,
) -> EnvoyResources:
    """`pause_oracle`: the gateway's pause oracle (host, port), which ends Retry-After pauses
    (extproc/cooldown.py); without it a failover cluster has no health check and a 429 counts
    towards outlier detection whatever its Retry-After."""
    res = EnvoyResources()
    providers = {b.cluster: len(b.providers) for b in ir.backends}
    for listener in ir.listeners:
        res.listeners.append(_listener(listener, limits or Limits()))
        res.routes.append(_route_config(listener, providers))
    direct = {
        r.backends[0].cluster
        for lst in ir.listeners
        for vh in lst.virtual_hosts
        for r in vh.routes
        if r.direct_provider
    }
    for backend in ir.backends:
        for twin in (False, True) if backend.cluster in direct else (False,):
            cluster, cla = _cluster(
                backend,
                listener_limit=_max_body(ir),
                system_ca_file=system_ca_file,
                direct=twin,
                pause_oracle=pause_oracle,
            )
            res.clusters.append(cluster)
            if cla is not None:
                res.endpoints.append(cla)
    return res


def _vhosts(ir: IR) -> list[VirtualHostIR]:
    return [vh for lst in ir.listeners for vh in lst.virtual_hosts]


def _max_body(ir: IR) -> int:
    return max((lst.max_body_bytes for lst in ir.listeners), default=10 * 1024 * 1024)


# --- listeners -------------------------------------------------------------------------------


def _openai_error(message: str, etype: str, code: str) -> dict[str, Any]:
    return {
        "json_format": {"error": {"message": message, "type": etype, "code": code, "param": None}},
        "content_type": "application/json",
    }


# OpenAI error type -> Anthropic's, for Envoy's own replies on /messages.
_ANTHROPIC_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "server_error": "api_error",
}
_ANTHROPIC_BY_CODE = {
    "route_not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "upstream_unavailable": "overloaded_error",
    "gateway_unavailable": "overloaded_error",
}


def _anthropic_error(openai_body: dict[str, Any]) -> dict[str, Any]:
    err = openai_body["json_format"]["error"]
    etype = _ANTHROPIC_BY_CODE.get(err["code"], _ANTHROPIC_TYPES.get(err["type"], "api_error"))
    return {
        "json_format": {"type": "error", "error": {"type": etype, "message": err["message"]}},
        "content_type": "application/json",
    }


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


_ANTHROPIC_CLIENT = "request.url_path.endsWith('/messages')"


def _mappers(flags: list[str] | None, status: int | None, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Two mappers: the Anthropic schema for Anthropic clients (/messages) first, then OpenAI's."""
    flt: dict[str, Any]
    if flags:
        flt = {"response_flag_filter": {"flags": flags}}
    else:
        # Only replies Envoy made itself: the extproc's own errors carry details "llmgw_*".
        flt = _cel(f"response.code == {status} && !response.code_details.startsWith('llmgw_')")
    anthropic = {"and_filter": {"filters": [flt, _cel(_ANTHROPIC_CLIENT)]}}
    return [
        {"filter": anthropic, "body_format_override": _anthropic_error(body)},
        {"filter": flt, "body_format_override": body},
    ]


def local_reply_config() -> dict[str, Any]:
    """Envoy's own error replies (no route, upstream down, too large) in the client's error schema.

    The extproc's own error bodies are already in the client's schema and are
    left alone (their response code details start with `llmgw_`).
    """
    return {
        "mappers": [
            *_mappers(
                ["NR"],
                None,
                _openai_error(
                    "No route matches %REQ(:METHOD)% %REQ(:PATH)%", "invalid_request_error", "route_not_found"
                ),
            ),
            *_mappers(
                ["NC"],
                None,
                _openai_error(
                    "Route %ROUTE_NAME% sends this request to a backend that is not valid",
                    "server_error",
                    "no_valid_backend",
                ),
            ),
            *_mappers(
                ["UH", "UF", "URX", "UO", "UC", "UR", "UPE", "DC"],
                None,
                _openai_error(
                    "Upstream provider unavailable: %LOCAL_REPLY_BODY%", "server_error", "upstream_unavailable"
                ),
            ),
            *_mappers(
                ["UT", "SI"],
                None,
                _openai_error("Upstream provider timed out: %LOCAL_REPLY_BODY%", "server_error", "upstream_timeout"),
            ),
            *_mappers(
                None,
                413,
                _openai_error(
                    "Request body is larger than this gateway accepts", "invalid_request_error", "request_too_large"
                ),
            ),
            *_mappers(
                None,
                503,
                _openai_error(
                    "The gateway's request processor is unavailable; retry shortly.",
                    "server_error",
                    "gateway_unavailable",
                ),
            ),
            *_mappers(
                None,
                500,
                _openai_error("The gateway failed to process the request.", "server_error", "gateway_error"),
            ),
        ]
    }


ACCESS_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "route": "%ROUTE_NAME%",
    "backend": "%UPSTREAM_CLUSTER%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "gen_ai.operation.name": "%DYNAMIC_METADATA(llmgw:gen_ai.operation.name)%",
    "gen_ai.provider.name": "%DYNAMIC_METADATA(llmgw:gen_ai.provider.name)%",
    "provider": "%DYNAMIC_METADATA(llmgw:provider)%",
    "gen_ai.request.model": "%DYNAMIC_METADATA(llmgw:gen_ai.request.model)%",
    "gen_ai.response.model": "%DYNAMIC_METADATA(llmgw:gen_ai.response.model)%",
    "gen_ai.usage.input_tokens": "%DYNAMIC_METADATA(llmgw:gen_ai.usage.input_tokens)%",
    "gen_ai.usage.output_tokens": "%DYNAMIC_METADATA(llmgw:gen_ai.usage.output_tokens)%",
    "gen_ai.usage.cache_read_input_tokens": "%DYNAMIC_METADATA(llmgw:gen_ai.usage.cache_read_input_tokens)%",
    "gen_ai.server.time_to_first_token_ms": "%DYNAMIC_METADATA(llmgw:gen_ai.server.time_to_first_token_ms)%",
}


def _extproc_service(stage: str, gateway: str | None) -> dict[str, Any]:
    meta = [{"key": names.STAGE_HEADER, "value": stage}]
    if gateway:
        meta.append({"key": names.GATEWAY_HEADER, "value": gateway})
    return {
        "envoy_grpc": {"cluster_name": names.EXTPROC_CLUSTER},
        "initial_metadata": meta,
        # A worker that just died (and is being restarted) costs a retry on another
        # worker, not a failed request; outlier detection then ejects it.
        "retry_policy": {
            "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
            "num_retries": 3,
            "retry_on": "connect-failure,refused-stream,unavailable,reset",
        },
    }


def router_stage_filter(gateway: str) -> dict[str, Any]:
    """The HCM ext_proc filter: model from the body, response translation and usage."""
    return {
        "name": names.ROUTER_STAGE_FILTER,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": _extproc_service("router", gateway),
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "message_timeout": EXTPROC_MESSAGE_TIMEOUT,
            "allow_mode_override": True,
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_header_mode": "SEND",
                "response_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            # The route chosen on the headers (direct routes: see gatewayapi/direct.py).
            "request_attributes": ["xds.route_name"],
            "response_attributes": [
                "xds.route_name",
                "xds.cluster_name",
                "xds.upstream_host_metadata",
                "upstream.request_attempt_count",
            ],
            "metadata_options": {"receiving_namespaces": {"untyped": [names.METADATA_NAMESPACE]}},
        },
    }


def early_header_mutation() -> list[dict[str, Any]]:
    """Headers only the gateway may set, removed from every request before route matching.

    `x-gateway-model-name` selects backends; a client's copy would otherwise pick
    a backend (and its key) on any request the extproc does not rewrite, such as
    a GET or a non-JSON body. Early header mutation runs before routing and
    before any filter, on every route.
    """
    return [
        {
            "name": "llmgw.strip_gateway_headers",
            "typed_config": {
                "@type": _T + "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                "mutations": [{"remove": names.MODEL_HEADER}],
            },
        }
    ]


def _listener(listener: ListenerIR, limits: Limits) -> dict[str, Any]:
    hcm = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": listener.name.replace("/", "_"),
        "codec_type": "AUTO",
        "rds": {
            "route_config_name": listener.name,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        },
        "http_filters": [
            router_stage_filter(listener.gateway),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": _T + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": "/dev/stdout",
                    "log_format": {"json_format": {"gateway": listener.gateway, **ACCESS_LOG_FORMAT}},
                },
            }
        ],
        "local_reply_config": local_reply_config(),
        "use_remote_address": True,
        "early_header_mutation_extensions": early_header_mutation(),
        # Slow and greedy clients (controlplane/limits.py).
        "request_headers_timeout": duration(limits.request_headers_timeout_s),
        "request_timeout": duration(limits.request_timeout_s),
        "stream_idle_timeout": duration(limits.stream_idle_timeout_s),
        "common_http_protocol_options": {"idle_timeout": duration(limits.idle_timeout_s)},
        "http2_protocol_options": {
            "max_concurrent_streams": H2_MAX_CONCURRENT_STREAMS,
            "initial_stream_window_size": H2_STREAM_WINDOW,
            "initial_connection_window_size": H2_CONNECTION_WINDOW,
        },
    }
    return {
        "name": listener.name,
        "address": {"socket_address": {"address": listener.address, "port_value": listener.port}},
        "per_connection_buffer_limit_bytes": limits.connection_buffer_bytes,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


# --- routes ----------------------------------------------------------------------------------


def _route_config(listener: ListenerIR, providers: dict[str, int]) -> dict[str, Any]:
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
                "routes": [_route(r, providers, body_limit=listener.max_body_bytes) for r in vh.routes],
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


def duration(seconds: float) -> str:
    """Fixed-point protobuf JSON duration ("1080000s", "0.5s"); never exponent notation."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


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
            action["cluster"] = direct_cluster(cluster) if r.direct_provider else cluster
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


def _re_escape(path: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in path)


# --- clusters --------------------------------------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
        "host_selection_retry_max_attempts": 5,
    }
    if spec and spec.per_try_timeout_s:
        policy["per_try_timeout"] = duration(spec.per_try_timeout_s)
    return policy


def attempt_stage_filter(*, failover: bool = False) -> dict[str, Any]:
    """The upstream ext_proc filter: per attempt, translate and authenticate for the picked provider.

    On failover clusters it also sees the response headers: it pauses a provider
    that answered with Retry-After (extproc/cooldown.py), or turns a 429 into a
    503 that outlier detection counts (the router stage restores the 429).
    """
    return {
        "name": names.ATTEMPT_STAGE_FILTER,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": _extproc_service("attempt", None),
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "message_timeout": EXTPROC_MESSAGE_TIMEOUT,
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_header_mode": "SEND" if failover else "SKIP",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            "request_attributes": ["xds.upstream_host_metadata"],
            # x-envoy-immediate-health-check-fail on a response pauses its provider (extproc/cooldown.py).
            **({"mutation_rules": {"allow_envoy": True}} if failover else {}),
        },
    }


def _tls_socket(p: ProviderIR, system_ca_file: str) -> dict[str, Any]:
    assert p.tls is not None
    validation: dict[str, Any] = {}
    if not p.tls.insecure_skip_verify:
        validation["trusted_ca"] = {"inline_string": p.tls.ca_pem} if p.tls.ca_pem else {"filename": system_ca_file}
        if p.tls.sni and not p.tls.skip_hostname_verify:
            validation["match_typed_subject_alt_names"] = [{"san_type": "DNS", "matcher": {"exact": p.tls.sni}}]
    tls: dict[str, Any] = {
        "@type": _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {"validation_context": validation},
    }
    if p.tls.sni:
        tls["sni"] = p.tls.sni
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def _eds_keeps_every_provider(providers: tuple[ProviderIR, ...]) -> bool:
    """Whether an EDS cluster would hold one host per provider.

    Envoy keys EDS hosts by address: of two endpoints with the same IP:port, in
    any priority, only the first is kept (`updateLocalityEndpoints` in
    source/extensions/clusters/eds/eds.cc), so the second provider (its
    metadata, its priority) silently disappears. A STRICT_DNS cluster resolves
    each endpoint as its own target with its own hosts, whatever the address,
    so providers that share a host:port (two models on api.openai.com, two
    deployments on one Azure resource, IP literals included) use that.
    """
    if not all(_is_ip(p.host) for p in providers):
        return False
    addresses = {(ipaddress.ip_address(p.host), p.port) for p in providers}
    return len(addresses) == len(providers)


def _lb_endpoint(p: ProviderIR, pause_oracle: tuple[str, int] | None = None) -> dict[str, Any]:
    ours: dict[str, Any] = {"provider": p.id}
    endpoint: dict[str, Any] = {
        "address": {"socket_address": {"address": p.host, "port_value": p.port}},
        "hostname": p.host,
    }
    if pause_oracle is not None:
        # The health check of this provider asks the pause oracle, naming the provider in Host.
        ours[PAUSABLE_KEY] = True
        endpoint["health_check_config"] = {
            "address": {"socket_address": {"address": pause_oracle[0], "port_value": pause_oracle[1]}},
            "hostname": pause_key(p.id),
        }
    return {
        "endpoint": endpoint,
        "metadata": {
            "filter_metadata": {
                names.METADATA_NAMESPACE: ours,
                "envoy.transport_socket_match": {"provider": p.id},
            }
        },
    }


def pause_health_check() -> dict[str, Any]:
    """Ends a Retry-After pause: every second, each provider's pause as the oracle reports it.

    The attempt stage starts a pause with `x-envoy-immediate-health-check-fail`; this check
    (against the gateway's oracle, never the provider) brings the host back once the oracle
    answers 200 again. An HTTP 503 from the oracle fails a host at once; an unreachable oracle
    is a network failure, which only counts after `unhealthy_threshold` in a row, so an oracle
    outage does not take healthy providers out. The criteria match none of the providers' TLS
    sockets: the check is plaintext.
    """
    return {
        "timeout": "1s",
        "interval": "1s",
        "no_traffic_interval": "1s",
        "unhealthy_interval": "1s",
        "interval_jitter": "0.1s",
        "unhealthy_threshold": 60,
        "healthy_threshold": 1,
        "reuse_connection": True,
        "http_health_check": {"path": ORACLE_PATH},
        "transport_socket_match_criteria": {"llmgw": "pause-oracle"},
    }


def _cluster(
    b: BackendIR,
    *,
    listener_limit: int,
    system_ca_file: str,
    direct: bool = False,
    pause_oracle: tuple[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The backend's cluster; `direct`: its twin for direct routes, without the attempt stage."""
    name = direct_cluster(b.cluster) if direct else b.cluster
    eds = _eds_keeps_every_provider(b.providers)
    upstream_filters = [] if direct else [attempt_stage_filter(failover=b.fails_over)]
    oracle = pause_oracle if b.fails_over and not direct else None
    priorities = sorted({p.priority for p in b.providers})
    cla = {
        "cluster_name": name,
        "endpoints": [
            {"priority": i, "lb_endpoints": [_lb_endpoint(p, oracle) for p in b.providers if p.priority == prio]}
            for i, prio in enumerate(priorities)
        ],
    }
    cluster: dict[str, Any] = {
        "name": name,
        "connect_timeout": "5s",
        "lb_policy": "LEAST_REQUEST",
        "per_connection_buffer_limit_bytes": listener_limit,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    *upstream_filters,
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {"@type": _T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
                    },
                ],
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                    "max_retries": 1000,
                }
            ]
        },
    }
    if b.fails_over:
        # A provider that keeps failing (5xx, 429 seen as 503, connect errors) is ejected and
        # traffic moves to its group's siblings or the next group; it returns after the ejection.
        cluster["outlier_detection"] = {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 3,
            "consecutive_local_origin_failure": 3,
            "interval": "1s",
            "base_ejection_time": "15s",
            "max_ejection_percent": 100,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
        }
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
        if oracle is not None:
            cluster["health_checks"] = [pause_health_check()]
            # The pause oracle answers 200 for a provider outlier detection ejected: that must not
            # end the ejection (Envoy's default for a host passing its active health check).
            cluster["outlier_detection"]["successful_active_health_check_uneject_host"] = False
    matches = [
        {
            "name": p.id,
            "match": {"provider": p.id},
            "transport_socket": _tls_socket(p, system_ca_file),
        }
        for p in b.providers
        if p.tls is not None
    ]
    if matches:
        cluster["transport_socket_matches"] = matches
    if eds:
        cluster["type"] = "EDS"
        cluster["eds_cluster_config"] = {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
        return cluster, cla
    cluster["type"] = "STRICT_DNS"
    cluster["dns_lookup_family"] = "V4_PREFERRED"
    cluster["load_assignment"] = cla
    return cluster, None
