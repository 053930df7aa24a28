"""Envoy's own error replies (no route, upstream down, too large) in the client's error schema."""

from __future__ import annotations

from typing import Any

from controlplane.xds.common import TYPE_PREFIX as _T


def _openai_error(message: str, etype: str, code: str) -> dict[str, Any]:
    return {
        "json_format": {"error": {"message": message, "type": etype, "code": code, "param": None}},
        "content_type": "application/json",
    }


# OpenAI error type -> Anthropic's, for Envoy's own replies on /messages.
_ANTHROPIC_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "server_error": "api_error",
}
_ANTHROPIC_BY_CODE = {
    "route_not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "upstream_unavailable": "overloaded_error",
    "gateway_unavailable": "overloaded_error",
    "rate_limit_exceeded": "rate_limit_error",
    "limits_unavailable": "overloaded_error",
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


def _mappers(
    flags: list[str] | None,
    status: int | None,
    body: dict[str, Any],
    *,
    details: str = "",
    headers: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Two mappers: the Anthropic schema for Anthropic clients (/messages) first, then OpenAI's.

    `details`: only replies whose response code details start with it (e.g. jwt_authn's).
    `headers`: added to the reply (e.g. Retry-After).
    """
    flt: dict[str, Any]
    if flags:
        flt = {"response_flag_filter": {"flags": flags}}
    elif details:
        flt = _cel(f"response.code == {status} && response.code_details.startsWith('{details}')")
    else:
        # Only replies Envoy made itself: the extproc's own errors carry details "llmgw_*".
        flt = _cel(f"response.code == {status} && !response.code_details.startsWith('llmgw_')")
    anthropic = {"and_filter": {"filters": [flt, _cel(_ANTHROPIC_CLIENT)]}}
    extra = {"headers_to_add": headers} if headers else {}
    return [
        {"filter": anthropic, "body_format_override": _anthropic_error(body), **extra},
        {"filter": flt, "body_format_override": body, **extra},
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
            # Envoy's ratelimit filter (traffic.rateLimit.global, xds/ratelimit.py): refused, or the
            # rate-limit service unreachable with failureMode FailClosed.
            *_mappers(
                ["RL"],
                None,
                _openai_error(
                    "Rate limit reached (rate-limit service); retry after %RESP(X-RATELIMIT-RESET)% s.",
                    "rate_limit_error",
                    "rate_limit_exceeded",
                ),
                headers=[
                    {
                        "header": {"key": "retry-after", "value": "%RESP(X-RATELIMIT-RESET)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            ),
            *_mappers(
                ["RLSE"],
                None,
                _openai_error(
                    "The gateway cannot check this route's rate limits right now; retry shortly.",
                    "server_error",
                    "limits_unavailable",
                ),
                headers=[
                    {"header": {"key": "retry-after", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                ],
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
                401,
                _openai_error("Invalid or missing token: %LOCAL_REPLY_BODY%", "authentication_error", "invalid_token"),
                details="jwt_authn",
            ),
            *_mappers(
                None,
                403,
                _openai_error(
                    "The token is not accepted here: %LOCAL_REPLY_BODY%", "permission_error", "invalid_token"
                ),
                details="jwt_authn",
            ),
            *_mappers(
                None,
                401,
                _openai_error(
                    "This request is not authenticated for this route (a missing or wrong API key or token).",
                    "authentication_error",
                    "unauthenticated",
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
