"""The two ext_proc filters: the router stage (HCM) and the attempt stage (upstream, per attempt)."""

from __future__ import annotations

from typing import Any

from controlplane.xds import names
from controlplane.xds.common import TYPE_PREFIX as _T
from extproc import wire

EXTPROC_MESSAGE_TIMEOUT = "5s"


def _extproc_service(stage: str, gateway: str | None) -> dict[str, Any]:
    meta = [{"key": names.STAGE_HEADER, "value": stage}]
    if gateway:
        meta.append({"key": names.GATEWAY_HEADER, "value": gateway})
    return {
        "envoy_grpc": {"cluster_name": names.EXTPROC_CLUSTER},
        "initial_metadata": meta,
        # A worker that just died (and is being restarted, or is waiting for its config)
        # costs a retry on another worker, not a failed request; outlier detection then
        # ejects it. Only streams the worker never answered are retried: Envoy retries
        # nothing once the response headers (gRPC initial metadata, sent with a worker's
        # first answer) arrived, so a retry replays at most the first message, whose
        # processing has no side effect. A worker dying mid-request fails the request
        # (503, or a cut stream) instead. previous_hosts: retry on another worker, not
        # on the dead one again.
        "retry_policy": {
            "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
            "num_retries": 3,
            "retry_on": "connect-failure,refused-stream,unavailable,reset",
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }


def router_stage_filter(gateway: str, *, jwt: bool = False) -> dict[str, Any]:
    """The HCM ext_proc filter: model from the body, response translation and usage.

    `jwt`: the listener has a jwt_authn filter, whose token payloads (dynamic metadata) the
    router stage receives on the request headers (caller identity, controlplane/xds/jwt_authn.py).
    """
    metadata: dict[str, Any] = {"receiving_namespaces": {"untyped": [names.METADATA_NAMESPACE]}}
    if jwt:
        metadata["forwarding_namespaces"] = {"untyped": [wire.JWT_METADATA_NAMESPACE]}
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
                "response.code_details",  # why Envoy answered itself: error.type (extproc/metrics.py)
            ],
            "metadata_options": metadata,
        },
    }


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
            # The route: guard decisions are counted per HTTPRoute (extproc/policies/guards).
            "request_attributes": ["xds.upstream_host_metadata", "xds.route_name"],
            # Request guard decisions for the access log (extproc/policies/guards).
            "metadata_options": {"receiving_namespaces": {"untyped": [names.METADATA_NAMESPACE]}},
            # x-envoy-immediate-health-check-fail on a response pauses its provider (extproc/cooldown.py).
            **({"mutation_rules": {"allow_envoy": True}} if failover else {}),
        },
    }
