"""Errors the gateway itself answers, in the client's schema (OpenAI or Anthropic)."""

from __future__ import annotations

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


# 4xx statuses that report the provider's failure, not the client's (a timeout, a failed model).
_PROVIDER_SIDE_4XX = frozenset({408, 424})


def error_body(*, status: int, message: str, code: str, anthropic: bool = False, param: str | None = None) -> bytes:
    # A status with no entry (a guard's 422, 451) is still the client's side, except the provider's own.
    client_error = 400 <= status < 500 and status not in _PROVIDER_SIDE_4XX
    if anthropic:
        etype = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if client_error else "api_error")
        return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
    etype = _OPENAI_TYPES.get(status, "invalid_request_error" if client_error else "server_error")
    return orjson.dumps({"error": {"message": message, "type": etype, "code": code, "param": param}})


def immediate(
    *,
    status: int,
    message: str,
    code: str,
    anthropic: bool = False,
    details: str = "",
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> ep.ProcessingResponse:
    """An ext_proc ImmediateResponse carrying a client-schema JSON error (and any extra `headers`)."""
    mutation = ep.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()))
            for k, v in {"content-type": "application/json", **(headers or {})}.items()
        ]
    )
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status={"code": status},
            headers=mutation,
            body=error_body(status=status, message=message, code=code, anthropic=anthropic, param=param),
            details="llmgw_" + (details or code),
        )
    )


def json_response(*, status: int, body: bytes) -> ep.ProcessingResponse:
    """A gateway-answered success (e.g. GET /models)."""
    headers = ep.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="content-type", raw_value=b"application/json"))
        ]
    )
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status={"code": status}, headers=headers, body=body, details="llmgw_answered"
        )
    )
