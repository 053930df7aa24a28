"""Attempt stage: the upstream ext_proc filter, once per attempt, after Envoy picked the endpoint.

It learns the provider from the endpoint metadata, rewrites the path to the
provider's, replaces any client credential with the provider's, and patches
the body (model override, `stream_options.include_usage`) only when needed.
Patching is idempotent: a retried attempt gets the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import errors
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.headers import attribute, header_dict, provider_from_host_metadata, set_header
from extproc.operations import Operation, operation_of, split_path

# Credentials a client may send; none of them reaches a provider.
CLIENT_CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
INTERNAL_HEADERS = ("x-gateway-model-name",)
_EMPTY_BODY = ep.ProcessingResponse(request_body=ep.BodyResponse())


@dataclass
class AttemptRequest:
    config: ExtprocConfig
    provider: ProviderConfig | None = None
    op: Operation | None = None

    def on_request_headers(self, req: ep.ProcessingRequest) -> ep.ProcessingResponse:
        pid = provider_from_host_metadata(attribute(req, "xds.upstream_host_metadata"))
        provider = self.config.providers.get(pid) if pid else None
        if provider is None:
            return errors.immediate(
                status=503,
                message="The gateway has no configuration for this backend yet; retry shortly.",
                code="backend_not_configured",
            )
        self.provider = provider
        headers = header_dict(req.request_headers)
        path, query = split_path(headers.get(":path", "/"))
        self.op = operation_of(path)
        mutation = ep.HeaderMutation(remove_headers=[*CLIENT_CREDENTIAL_HEADERS, *INTERNAL_HEADERS])
        new_path = self._upstream_path(path) + query
        if new_path != headers.get(":path"):
            mutation.set_headers.append(set_header(":path", new_path))
        if provider.auth is not None:
            mutation.set_headers.append(set_header(provider.auth.header, provider.auth.header_value()))
        return ep.ProcessingResponse(
            request_headers=ep.HeadersResponse(response=ep.CommonResponse(header_mutation=mutation))
        )

    def _upstream_path(self, path: str) -> str:
        assert self.provider is not None
        if self.provider.path:
            return self.provider.path
        if self.op is None:
            return path  # an operation we do not know: leave the path alone
        return self.provider.path_prefix + self.op.suffix

    def on_request_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        provider, op = self.provider, self.op
        if provider is None or op is None or not msg.body:
            return _EMPTY_BODY
        wants_model = provider.model is not None
        if not wants_model and not (op.stream_usage_option and b'"stream"' in msg.body):
            return _EMPTY_BODY
        try:
            body = orjson.loads(msg.body)
        except orjson.JSONDecodeError:
            return _EMPTY_BODY  # the router stage already answered bad JSON
        if not isinstance(body, dict):
            return _EMPTY_BODY
        changed = False
        if wants_model and body.get("model") != provider.model:
            body["model"] = provider.model
            changed = True
        if op.stream_usage_option and body.get("stream") is True:
            options = body.get("stream_options")
            if not isinstance(options, dict):
                options = {}
            if options.get("include_usage") is not True:
                body["stream_options"] = {**options, "include_usage": True}
                changed = True
        if not changed:
            return _EMPTY_BODY
        new_body = orjson.dumps(body)
        common = ep.CommonResponse(
            header_mutation=ep.HeaderMutation(set_headers=[set_header("content-length", str(len(new_body)))])
        )
        common.body_mutation.body = new_body
        return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))
