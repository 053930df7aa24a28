"""The JSON access log: one line per request with the GenAI fields the extproc writes as dynamic metadata."""

from __future__ import annotations

from typing import Any

from controlplane.xds.common import TYPE_PREFIX
from extproc import wire

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
    "cost_usd": "%DYNAMIC_METADATA(llmgw:cost_usd)%",
    # The caller (extproc/identity.py), never the key: the key's id, its user, team and tenant.
    "key_id": "%DYNAMIC_METADATA(llmgw:key_id)%",
    "user": "%DYNAMIC_METADATA(llmgw:user)%",
    "team": "%DYNAMIC_METADATA(llmgw:team)%",
    "tenant": "%DYNAMIC_METADATA(llmgw:tenant)%",
    "error.type": "%DYNAMIC_METADATA(llmgw:error.type)%",
    # Prompt guard decisions, `kind:action,...` (extproc/policies/guards); never the text.
    **{
        key: f"%DYNAMIC_METADATA({wire.METADATA_NAMESPACE}:{key})%"
        for key in (wire.GUARD_REQUEST_METADATA_KEY, wire.GUARD_RESPONSE_METADATA_KEY)
    },
}


def access_log(gateway: str) -> list[dict[str, Any]]:
    """The HCM's access log: JSON lines on Envoy's standard output.

    The stdout logger writes to the inherited descriptor. A file logger on
    `/dev/stdout` would reopen it with an offset of its own, and with
    `llmgw run > file` Envoy and the Python processes would overwrite each
    other's lines.
    """
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": TYPE_PREFIX + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": {"gateway": gateway, **ACCESS_LOG_FORMAT}},
            },
        }
    ]
