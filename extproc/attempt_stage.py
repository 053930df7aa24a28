"""Attempt stage: the upstream ext_proc filter, once per attempt, after Envoy picked the endpoint.

It learns the provider from the endpoint metadata, translates the request
for that provider's API (the pair module), sets the provider's path, and
replaces any client credential with the provider's. OpenAI-compatible
traffic is patched only when needed, without parsing the body otherwise.
Idempotent: a retried attempt gets the same result.

On failover clusters it also sees each attempt's response headers: a
429/503/529 with `Retry-After` pauses that provider (extproc/cooldown.py: the
board, plus `x-envoy-immediate-health-check-fail` so Envoy stops picking it at
once); a 429 without it becomes a 503 for outlier detection (the router stage
restores it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import errors, metrics, validation, wire
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.cooldown import PAUSABLE_KEY, PAUSE_STATUSES, CooldownBoard, retry_after_seconds
from extproc.credentials import CredentialError, SignedRequest, auth_headers, client_token
from extproc.headers import attribute, header_dict, host_metadata_has, provider_from_host_metadata, set_header
from extproc.operations import OPERATIONS_BY_NAME, PASSTHROUGH, Operation, operation_of, refusal, route_type, split_path
from extproc.policies import transforms
from extproc.policies.guards.config import PromptGuardConfig
from extproc.policies.guards.stages import guard_request
from extproc.providers import default_model, fixed_model, module_for, operations_of
from extproc.translate import pair_for
from extproc.translate.base import RequestContext, TranslationError, UpstreamRequest, encode

log = logging.getLogger("llmgw.extproc")

# Credentials a client may send; none of them reaches a provider.
CLIENT_CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
_EMPTY_BODY = ep.ProcessingResponse(request_body=ep.BodyResponse())


@dataclass
class AttemptRequest:
    config: ExtprocConfig
    provider: ProviderConfig | None = None
    op: Operation | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    cooldowns: CooldownBoard | None = None
    pausable: bool = False  # the host is health checked against the pause oracle
    model_missing: bool = False  # the client named no model (the backend's, if it fixes one, is used)
    routed_model: str | None = None  # x-gateway-model-name: the model routed on (a gateway alias resolved)
    body_changed: bool = False  # the router stage (direct route) changed the parsed body it hands over
    answered: bool = False  # this attempt got response headers (failover clusters ask for them)
    passthrough: bool = False  # the backend's policies.ai.routes sends this path upstream as is
    route: str = ""  # "<ns>/<name>" of the HTTPRoute (guard metrics)

    def on_request_headers(self, req: ep.ProcessingRequest) -> ep.ProcessingResponse:
        meta = attribute(req, "xds.upstream_host_metadata")
        pid = provider_from_host_metadata(meta)
        provider = self.config.providers.get(pid) if pid else None
        if provider is None:
            return _immediate(
                status=503,
                message="The gateway has no configuration for this backend yet; retry shortly.",
                code="backend_not_configured",
            )
        self.pausable = host_metadata_has(meta, PAUSABLE_KEY)
        route_name = attribute(req, "xds.route_name")
        self.route = (wire.route_of_route_name(route_name) if isinstance(route_name, str) else None) or ""
        headers = header_dict(req.request_headers)
        # The router stage sets the model header whenever the body names a model (and removes any client copy).
        self.model_missing = wire.MODEL_HEADER not in headers
        self.routed_model = headers.get(wire.MODEL_HEADER)
        if self.pausable and self.cooldowns is not None and self.cooldowns.remaining(provider.id) > 0:
            pause = backend_pause(self.config, self.cooldowns, provider.backend)
            if pause > 0:
                return paused_reply(headers.get(":path", "/"), pause)
        return self.start(provider, headers, end_of_stream=req.request_headers.end_of_stream)

    def start(self, provider: ProviderConfig, headers: dict[str, str], *, end_of_stream: bool) -> ep.ProcessingResponse:
        """The headers response for a request to `provider` (the router stage calls it for direct routes)."""
        self.provider = provider
        metrics.record_attempt(backend=provider.backend, provider=provider.id, kind=provider.kind)
        self.headers = headers
        path, self.query = split_path(self.headers.get(":path", "/"))
        self.op = operation_of(path, provider.routes)
        self.passthrough = bool(provider.routes) and route_type(path, provider.routes) == PASSTHROUGH
        # Defence in depth behind the router stage's check: never a credential for an operation
        # this provider does not serve (the path here is the one after any route rewrite), unless
        # the backend opted in to raw passthrough for this path.
        refused = refusal(headers.get(":method", ""), path, operations_of(provider), provider.kind, provider.routes)
        if refused is not None:
            return _immediate(
                status=refused.status, message=refused.message, code=refused.code, anthropic=refused.anthropic
            )
        no_default = self.op is not None and self.op.needs_model and not default_model(provider, self.op)
        # Without a body to read, a missing model header is final. With one, the body decides: on a
        # retry Envoy hands this filter the headers as the previous attempt left them, the model header
        # removed (see `_model_refusal`).
        if self.model_missing and no_default and end_of_stream:
            return self._model_refusal()
        mutation = ep.HeaderMutation(remove_headers=[*CLIENT_CREDENTIAL_HEADERS, *wire.GATEWAY_ONLY_HEADERS])
        if end_of_stream:  # no body will follow: finish here
            try:
                self._finish(mutation, UpstreamRequest(body=None), body=b"", model="", stream=False)
            except CredentialError as exc:
                return self._credential_failed(exc)
        return ep.ProcessingResponse(
            request_headers=ep.HeadersResponse(response=ep.CommonResponse(header_mutation=mutation))
        )

    def on_request_body(self, msg: ep.HttpBody, parsed: dict[str, Any] | None = None) -> ep.ProcessingResponse:
        """`parsed`: the body already parsed by the caller (the router stage), so it is parsed once."""
        try:
            return self._on_request_body(msg, parsed)
        except CredentialError as exc:
            return self._credential_failed(exc)
        except TranslationError as exc:  # the client's mistake: a 4xx in its schema, nothing to log
            return _immediate(
                status=exc.status,
                message=exc.message,
                code=exc.code,
                anthropic=self._anthropic_client(),
                details=exc.code,
                param=exc.param,
            )
        except Exception:  # our bug: logged, and a 500 (never Envoy's 503 "retry shortly" for a failed stream)
            log.exception("attempt stage failed on the request body (%s)", self.op.name if self.op else "no operation")
            return _immediate(
                status=500,
                message="The gateway failed to process the request.",
                code="gateway_error",
                anthropic=self._anthropic_client(),
            )

    def _model_refusal(self) -> ep.ProcessingResponse:
        """The body names no model and the provider fixes none.

        Decided on the body, not on the absence of the model header: the router stage sets that
        header whenever the body names a model and this stage removes it before the request leaves,
        but Envoy gives a retried attempt's filters the headers as the previous attempt mutated
        them, so on failover the header is gone although the client named a model.
        """
        return _immediate(
            status=400,
            message="You must provide a model parameter.",
            code="missing_model",
            anthropic=self._anthropic_client(),
        )

    def guards(self) -> PromptGuardConfig | None:
        """The backend's prompt guards, when they have request guards for this operation."""
        if self.provider is None or self.op is None:
            return None
        policy = self.config.guards.get(self.provider.backend)
        return policy if policy is not None and policy.request else None

    async def on_request_body_async(
        self, msg: ep.HttpBody, parsed: dict[str, Any] | None = None
    ) -> ep.ProcessingResponse:
        """`on_request_body` after the backend's request guards (guard, then translate)."""
        policy = self.guards()
        if policy is None or self.op is None:
            return self.on_request_body(msg, parsed)
        try:
            guarded = await guard_request(
                policy, op=self.op, raw=msg.body, parsed=parsed, headers=self.headers, route=self.route
            )
        except Exception:  # our bug: logged, a 500 in the client's schema
            log.exception("request guards failed (%s)", self.op.name)
            return _immediate(
                status=500,
                message="The gateway failed to process the request.",
                code="gateway_error",
                anthropic=self._anthropic_client(),
            )
        outcome = guarded.outcome
        summary = outcome.summary()
        if outcome.rejection is not None:
            rejection = outcome.rejection
            resp = _immediate(
                status=rejection.status,
                message=rejection.message,
                code=rejection.code,
                anthropic=self._anthropic_client(),
                headers={wire.GUARD_HEADER: summary},
            )
        else:
            if outcome.masked:
                msg = ep.HttpBody(body=guarded.raw, end_of_stream=msg.end_of_stream)
            resp = self.on_request_body(msg, guarded.parsed)
            common = resp.request_body.response
            if outcome.masked and resp.HasField("request_body") and not common.HasField("body_mutation"):
                common.header_mutation.set_headers.append(set_header("content-length", str(len(guarded.raw))))
                common.body_mutation.body = guarded.raw
        if summary:
            ours = resp.dynamic_metadata.fields[wire.METADATA_NAMESPACE].struct_value
            ours.fields[wire.GUARD_REQUEST_METADATA_KEY].string_value = summary
        return resp

    def _anthropic_client(self) -> bool:
        return self.op is not None and self.op.client_api == "anthropic"

    def _credential_failed(self, exc: CredentialError) -> ep.ProcessingResponse:
        if self.provider is not None:
            p = self.provider
            metrics.record_credential_failure(backend=p.backend, provider=p.id, kind=p.kind)
        return _immediate(
            status=502,
            message=f"The gateway could not authenticate upstream: {exc}",
            code="credential_error",
            anthropic=self._anthropic_client(),
        )

    def _on_request_body(self, msg: ep.HttpBody, already_parsed: dict[str, Any] | None) -> ep.ProcessingResponse:
        provider, op = self.provider, self.op
        if provider is None:
            return _EMPTY_BODY
        module = module_for(provider.kind)
        mutation = ep.HeaderMutation()
        if op is None or module is None:
            self._finish(mutation, UpstreamRequest(body=None), body=msg.body, model="", stream=False)
            return _body_response(mutation, None)
        raw = msg.body
        body: dict[str, Any] | None = None
        model = fixed_model(provider, op) or ""
        stream = False
        plan = transforms.plan_for(provider)
        transformed = self.body_changed
        if raw:
            skip_ok = plan is None and not self.body_changed
            pair = pair_for(op, provider, model) if op.client_api == "openai" and skip_ok else None
            if pair is not None and pair.provider_api == "openai" and not self.model_missing:
                # Most OpenAI-compatible requests need no change: skip the parse.
                ctx = RequestContext(provider=provider, op=op.name, model=model, stream=False)
                if not pair.needs_body(raw, ctx):
                    self._finish(mutation, UpstreamRequest(body=None), body=raw, model=model, stream=False)
                    return _body_response(mutation, None)
            parsed: Any = already_parsed
            if parsed is None:
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    parsed = None  # the router stage has answered bad JSON already
            if isinstance(parsed, dict):
                body = parsed
                if plan is not None:  # the transform step: aliases, field mutations, prompt enrichment
                    transformed = transforms.apply_request(
                        body,
                        plan,
                        op=op.name,
                        client_api=op.client_api,
                        routed_model=self.routed_model,
                        request=transforms.request_view(self.headers) if plan.reads_request else None,
                    )
                client_model = parsed.get("model")
                model = fixed_model(provider, op) or (client_model if isinstance(client_model, str) else "")
                if not model:
                    model = default_model(provider, op) or ""
                if not model and op.needs_model:
                    return self._model_refusal()
                stream = parsed.get("stream") is True
        if body is None:
            self._finish(mutation, UpstreamRequest(body=None), body=raw, model=model, stream=stream)
            return _body_response(mutation, None)
        pair = pair_for(op, provider, model)
        if pair is None:
            return _immediate(
                status=400,
                message=f"The {op.suffix} API is not available on provider {provider.kind!r} "
                f"({module.api(provider, op, model)}).",
                code="unsupported_operation",
                anthropic=op.client_api == "anthropic",
            )
        if pair.client_api != pair.provider_api:  # rebuilt for another API: the shapes it reads must hold
            validation.check_translated(body, client_api=pair.client_api, op=op.name)
        finalize = None
        if plan is not None:
            request = transforms.request_view(self.headers) if plan.reads_request else None
            api = pair.provider_api
            if pair.client_api == api:  # same schema: the client's body is the provider's
                transformed |= transforms.finalize(body, plan, provider_api=api, request=request)
            else:
                finalize = partial(transforms.finalize, plan=plan, provider_api=api, request=request)
        ctx = RequestContext(provider=provider, op=op.name, model=model, stream=stream, finalize=finalize)
        up = pair.request(body, ctx)  # TranslationError: the client's 4xx (on_request_body)
        if up.body is None and transformed:
            up.body = encode(body)
        self._finish(mutation, up, body=raw if up.body is None else up.body, model=model, stream=stream)
        return _body_response(mutation, up.body)

    def _finish(
        self, mutation: ep.HeaderMutation, up: UpstreamRequest, *, body: bytes, model: str, stream: bool
    ) -> None:
        """Path, extra headers and credential for the request as it will leave Envoy."""
        assert self.provider is not None
        module = module_for(self.provider.kind)
        path = self.headers.get(":path", "/")
        if up.path is not None:
            path = up.path
        elif module is not None and self.op is not None:
            op = OPERATIONS_BY_NAME.get(up.op, self.op) if up.op else self.op
            path = module.path(self.provider, op, model, stream)
            if "?" not in path:
                path += self.query
        elif self.provider.path and not self.passthrough:
            path = self.provider.path
        headers = dict(up.headers)
        signed = SignedRequest(
            method=self.headers.get(":method", "POST"),
            authority=self.headers.get(":authority", self.provider.host),
            path=path,
            headers=headers,
            body=body,
            client_token=client_token(self.headers)
            if self.provider.auth and self.provider.auth.kind == "passthrough"
            else "",
        )
        headers.update(auth_headers(self.provider, signed))
        if path != self.headers.get(":path"):
            mutation.set_headers.append(set_header(":path", path))
        for key, value in headers.items():
            mutation.set_headers.append(set_header(key, value))

    def on_response_headers(self, req: ep.ProcessingRequest) -> ep.ProcessingResponse:
        """Failover clusters only: pause a provider that sent Retry-After, or mark a 429 as a 503."""
        self.answered = True
        status = b""
        for h in req.response_headers.headers.headers:
            if h.key == ":status":
                status = h.raw_value or h.value.encode()
                break
        if self.provider is not None and status[:1] in (b"4", b"5"):
            p = self.provider
            metrics.record_attempt_error(backend=p.backend, provider=p.id, kind=p.kind, error_type=status.decode())
        if status not in _PAUSE_STATUSES:
            return _PASS_RESPONSE
        if self.pausable and self.cooldowns is not None and self.provider is not None:
            pause = retry_after_seconds(header_dict(req.response_headers))
            if pause is not None:
                if self.cooldowns.note(self.provider.id, pause):
                    log.info(
                        "provider %s asked for a pause of %.1f s (HTTP %s)", self.provider.id, pause, status.decode()
                    )
                # Envoy's router excludes the host now; the health check against the pause oracle
                # lets it back when the pause is over. The status stays: a 429 is retried
                # (retriable_status_codes) without also counting towards an outlier ejection.
                return _PAUSED_RESPONSE
        if status != b"429":
            return _PASS_RESPONSE
        mutation = ep.HeaderMutation(
            set_headers=[set_header(":status", "503"), set_header(wire.UPSTREAM_STATUS_HEADER, "429")]
        )
        return ep.ProcessingResponse(
            response_headers=ep.HeadersResponse(response=ep.CommonResponse(header_mutation=mutation))
        )

    def on_stream_closed(self) -> None:
        """A failover attempt that ended without response headers (reset, timeout) failed too."""
        if self.pausable and not self.answered and self.provider is not None:
            p = self.provider
            metrics.record_attempt_error(backend=p.backend, provider=p.id, kind=p.kind, error_type="no_response")


# A 429 without Retry-After becomes 503 on its way to the router, so that outlier detection
# (which counts 5xx, not 429) ejects a rate-limited provider; the router stage restores the 429.
# Read by Envoy's router on the upstream response (after upstream filters): the host fails its
# active health check at once. The router stage removes it before the client sees it.
_PASS_RESPONSE = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
_PAUSED_RESPONSE = ep.ProcessingResponse(
    response_headers=ep.HeadersResponse(
        response=ep.CommonResponse(
            header_mutation=ep.HeaderMutation(set_headers=[set_header(wire.IMMEDIATE_HC_FAIL_HEADER, "true")])
        )
    )
)
_PAUSE_STATUSES = frozenset(str(s).encode() for s in PAUSE_STATUSES)


def backend_pause(config: ExtprocConfig, cooldowns: CooldownBoard, backend: str) -> float:
    """Seconds until a provider of `backend` is back, when every one of them is paused; else 0."""
    pauses = [cooldowns.remaining(p.id) for p in config.providers.values() if p.backend == backend]
    return min(pauses) if pauses and all(pauses) else 0.0


def paused_reply(path: str, pause: float) -> ep.ProcessingResponse:
    """Every provider of the backend asked for a pause: a 429 with Retry-After, in the client's schema.

    Envoy sends requests to excluded hosts when all of a cluster's hosts are excluded; the
    provider is not asked again before its time. Clients (the official SDKs included) wait
    for Retry-After on a 429. A local reply here goes straight to the client: no retry.
    """
    op = operation_of(split_path(path)[0])
    seconds = max(1, math.ceil(pause))
    return _immediate(
        status=429,
        message=f"Every provider of this backend asked the gateway to wait; retry after {seconds} s.",
        code="providers_paused",
        anthropic=op is not None and op.client_api == "anthropic",
        headers={"retry-after": str(seconds)},
    )


def _immediate(*, headers: dict[str, str] | None = None, **kw: Any) -> ep.ProcessingResponse:
    """An error in the client's schema, marked so the router stage does not translate it as a provider's.

    The mark's value is the error's code: the router stage counts the request with it as `error.type`.
    """
    return errors.immediate(headers={wire.ANSWERED_HEADER: str(kw["code"]), **(headers or {})}, **kw)


def _body_response(mutation: ep.HeaderMutation, new_body: bytes | None) -> ep.ProcessingResponse:
    common = ep.CommonResponse(header_mutation=mutation)
    if new_body is not None:
        common.header_mutation.set_headers.append(set_header("content-length", str(len(new_body))))
        common.body_mutation.body = new_body
    return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))
