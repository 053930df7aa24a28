"""Router stage: the HCM ext_proc filter on AI routes.

Request: reads the buffered body once, sets `x-gateway-model-name` and clears
the route cache so HTTPRoute header matches can route on the body's model,
and rejects bad input in the client's schema. Response: extracts usage (JSON
or SSE), hides the usage-only chunk the gateway asked for on the client's
behalf, records metrics and writes usage to Envoy dynamic metadata for the
access log.

A streamed response can be cut after it started (the provider resets, the
client goes away). Envoy then resets the client's stream itself: once
response headers went out, no filter can add bytes (router.cc onUpstreamAbort
-> sendLocalReply -> "Prior headers have already been sent" -> resetStream),
and this stage only learns it when Envoy closes the ext_proc stream. So
streams carry their metadata as it becomes known (identity on the headers,
usage whenever it changes) so the access log has it, and a closed stream
still records metrics with the usage counted so far (`on_stream_closed`). A
stream the provider ends early but cleanly gets an error event in the
client's schema from its translation instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

from extproc import errors, metrics, validation, wire
from extproc.attempt_stage import AttemptRequest, backend_pause
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.cooldown import CooldownBoard
from extproc.headers import attribute, header_dict, provider_from_host_metadata, set_header
from extproc.operations import Operation, operation_of, refusal
from extproc.picker.pools import OBJECTIVE_HEADER, PoolPick, pick_for, pick_queued, pool_of, record_pick
from extproc.picker.prefix import blocks, prompt_text
from extproc.picker.scraper import LoadBoard
from extproc.providers import default_model, fixed_model, operations_of
from extproc.translate import pair_for
from extproc.translate.base import RequestContext, ResponseTranslation, TranslationError
from extproc.usage import Usage

log = logging.getLogger("llmgw.extproc")

_CONTINUE = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
_STREAMED = pm.ProcessingMode(response_body_mode=pm.ProcessingMode.STREAMED)


@dataclass
class RouterRequest:
    """Per-request state of the router stage (one ext_proc stream)."""

    gateway: str
    config: ExtprocConfig
    started: float = field(default_factory=time.monotonic)
    op: Operation | None = None
    path: str = ""
    request_model: str = ""
    client_wants_usage: bool = True
    stream: bool = False
    status: int = 0
    translation: ResponseTranslation | None = None
    route: str = ""
    backend: str = ""
    provider: str = ""
    response_model: str = ""
    usage: Usage | None = None
    first_chunk_at: float | None = None
    done: bool = False
    attempts: int = 1
    encoding_format: str | None = None
    provider_id: str = ""
    direct: AttemptRequest | None = None  # set on a direct route: this stage does the attempt work
    cooldowns: CooldownBoard | None = None  # providers paused by their Retry-After
    replacement_body: bytes | None = None  # the body this stage answers instead of Envoy's
    reported_usage: Usage | None = None  # what the dynamic metadata already says
    # The worker's newest config, for a provider this request's snapshot does not know.
    latest_config: Callable[[], ExtprocConfig] | None = None
    # InferencePools llmgw picks for (extproc/picker): the worker's load board, the route matched
    # on the headers and the InferenceObjective the client named.
    loads: LoadBoard | None = None
    route_name: str | None = None
    objective: str = ""
    queued: tuple[str, list[bytes]] | None = None  # (pool, prompt prefix) of a pick waiting for room

    # --- request ---------------------------------------------------------------------------

    def on_request_headers(self, msg: ep.HttpHeaders, *, route_name: object = None) -> ep.ProcessingResponse:
        headers = header_dict(msg)
        self.path = headers.get(":path", "")
        self.op = operation_of(self.path)
        self.route_name = route_name if isinstance(route_name, str) else None
        self.objective = headers.get(OBJECTIVE_HEADER, "")
        pid = self.config.direct_routes.get(route_name) if isinstance(route_name, str) else None
        provider = self.config.providers.get(pid) if pid else None
        # The operation allowlist, on the client's path (before any route rewrite): what the gateway
        # does not know never reaches a provider with its credential, and no provider is contacted.
        supported = operations_of(provider) | {"models"} if provider is not None else None
        refused = refusal(headers.get(":method", ""), self.path, supported, provider.kind if provider else "")
        if refused is not None:
            self.done = True
            return errors.immediate(
                status=refused.status, message=refused.message, code=refused.code, anthropic=refused.anthropic
            )
        if self.op and self.op.name == "models":
            return self._models()
        if msg.end_of_stream and self.op and self.op.needs_model:
            return self._error(400, "The request has no body; a JSON body with `model` is required.", "missing_body")
        if provider is not None:
            # The route cannot change after the body is read: do the provider work here and
            # save the attempt stage's ext_proc stream (controlplane/gatewayapi/direct.py).
            self.direct = AttemptRequest(config=self.config)
            return self.direct.start(provider, headers, end_of_stream=msg.end_of_stream)
        return _CONTINUE

    def on_request_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        try:
            return self._on_request_body(msg)
        except TranslationError as exc:  # the client's mistake: a 400 in its schema, nothing to log
            return self._error(exc.status, exc.message, exc.code, param=exc.param)
        except Exception:  # our bug: visible in the log, a 500 in the client's schema (never "retry shortly")
            log.exception("router stage failed on the request body (%s)", self.op.name if self.op else "no operation")
            return self._error(500, "The gateway failed to process the request.", "gateway_error")

    def _on_request_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        op = self.op
        try:
            body = orjson.loads(msg.body)
        except orjson.JSONDecodeError as exc:
            if op is None:
                return ep.ProcessingResponse(request_body=ep.BodyResponse())
            return self._error(
                400, f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.", "invalid_json"
            )
        if not isinstance(body, dict):
            if op is None:
                return ep.ProcessingResponse(request_body=ep.BodyResponse())
            return self._error(400, "The request body must be a JSON object.", "invalid_body")
        model = body.get("model")
        if op is not None and op.needs_model and (not isinstance(model, str) or not model):
            # Absent or empty is fine when the backend fixes the model: on a direct route this stage knows
            # the provider; otherwise the attempt stage decides (it sees no model header).
            direct = self.direct.provider if self.direct is not None else None
            if model not in (None, "") or (direct is not None and default_model(direct, op) is None):
                return self._error(400, "You must provide a model parameter.", "missing_model")
            model = (default_model(direct, op) or "") if direct is not None else ""
            if self.direct is not None:
                self.direct.model_missing = True
        if op is not None:
            validation.check_routing_fields(body, streams=op.streams, stream_usage_option=op.stream_usage_option)
        elif isinstance(model, str) and validation.model_problem(model) is not None:
            model = None  # not our API: pass the request on, but never copy what is no header value
        self.request_model = model if isinstance(model, str) else ""
        encoding = body.get("encoding_format")
        self.encoding_format = encoding if isinstance(encoding, str) else None
        if op is not None and op.streams and body.get("stream") is True:
            self.stream = True
            options = body.get("stream_options")
            self.client_wants_usage = not op.stream_usage_option or (
                isinstance(options, dict) and options.get("include_usage") is True
            )
        if self.direct is not None:
            return self.direct.on_request_body(msg, parsed=body)
        common = ep.CommonResponse()
        if self.request_model:
            common.header_mutation.set_headers.append(set_header(wire.MODEL_HEADER, self.request_model))
        else:
            common.header_mutation.remove_headers.append(wire.MODEL_HEADER)
        refused = self._pick_endpoint(common, body)
        if refused is not None:
            return refused
        common.clear_route_cache = True
        return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))

    def _pick_endpoint(self, common: ep.CommonResponse, body: dict[str, object]) -> ep.ProcessingResponse | None:
        """InferencePools without a picker of their own: llmgw picks (extproc/picker); None: go on."""
        if self.loads is None or not self.config.pools:
            return None
        pool = pool_of(self.config, gateway=self.gateway, route_name=self.route_name, model=self.request_model)
        if pool is None:
            return None
        prefix = blocks(prompt_text(body))
        picked = pick_for(
            self.loads,
            self.config,
            pool=pool,
            objective=self.objective,
            prefix=prefix,
            record=False,
            model=self.request_model,
        )
        if picked.decision.shed:
            # Saturated and a lower priority: the server awaits `finish_queued` (a short wait for room).
            self.queued = (pool, prefix)
            return None
        record_pick(picked)
        return self._apply_pick(common, picked)

    def _apply_pick(self, common: ep.CommonResponse, picked: PoolPick) -> ep.ProcessingResponse | None:
        decision = picked.decision
        if decision.shed:
            return self._error(
                429,
                f"The model servers of InferencePool {picked.pool} are saturated; this request's priority is shed. "
                "Retry later.",
                "pool_saturated",
            )
        if not decision.endpoints:
            return self._error(503, f"InferencePool {picked.pool} has no ready endpoint.", "no_ready_endpoint")
        value = ",".join(decision.endpoints)
        common.header_mutation.set_headers.append(set_header(wire.DESTINATION_ENDPOINT_HEADER, value))
        return None

    async def finish_queued(self, resp: ep.ProcessingResponse) -> ep.ProcessingResponse:
        """A request shed at first: wait briefly for room, then send it to its endpoint or refuse it (429)."""
        assert self.queued is not None and self.loads is not None
        pool, prefix = self.queued
        self.queued = None
        picked = await pick_queued(
            self.loads, self.config, pool=pool, objective=self.objective, prefix=prefix, model=self.request_model
        )
        refused = self._apply_pick(resp.request_body.response, picked)
        return refused if refused is not None else resp

    def _models(self) -> ep.ProcessingResponse:
        ids = self.config.models.get(self.gateway, [])
        body = orjson.dumps(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 0, "owned_by": "llmgw"} for m in ids],
            }
        )
        return errors.json_response(status=200, body=body)

    def _error(self, status: int, message: str, code: str, *, param: str | None = None) -> ep.ProcessingResponse:
        self.done = True
        anthropic = self.op is not None and self.op.client_api == "anthropic"
        return errors.immediate(status=status, message=message, code=code, anthropic=anthropic, param=param)

    # --- response --------------------------------------------------------------------------

    def on_response_headers(self, req: ep.ProcessingRequest) -> ep.ProcessingResponse:
        msg = req.response_headers
        headers = header_dict(msg)
        resp = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
        original = headers.pop(wire.UPSTREAM_STATUS_HEADER, None)
        if original is not None:  # the attempt stage turned a 429 into a 503 for outlier detection
            headers[":status"] = original
            mutation = resp.response_headers.response.header_mutation
            mutation.set_headers.append(set_header(":status", original))
            mutation.remove_headers.append(wire.UPSTREAM_STATUS_HEADER)
        if headers.pop(wire.IMMEDIATE_HC_FAIL_HEADER, None) is not None:  # the attempt stage paused the provider
            resp.response_headers.response.header_mutation.remove_headers.append(wire.IMMEDIATE_HC_FAIL_HEADER)
        answered = headers.pop(wire.ANSWERED_HEADER, None) is not None  # the attempt stage's own error
        if answered:
            resp.response_headers.response.header_mutation.remove_headers.append(wire.ANSWERED_HEADER)
        try:
            self.status = int(headers.get(":status", "0"))
        except ValueError:
            self.status = 0
        attempts = attribute(req, "upstream.request_attempt_count")
        if isinstance(attempts, int | float) and attempts > 0:
            self.attempts = int(attempts)
        route_name = attribute(req, "xds.route_name")
        route = wire.route_of_route_name(route_name) if isinstance(route_name, str) else None
        if route is not None:
            self.route = route
        cluster = attribute(req, "xds.cluster_name")
        if isinstance(cluster, str):
            self.backend = wire.backend_of_cluster(cluster)
        pid = provider_from_host_metadata(attribute(req, "xds.upstream_host_metadata"))
        provider = self._provider(pid)
        if pid and provider is None:
            # A provider answered whose API this worker does not know (a worker that has no
            # config yet, or an older one than the worker that translated the request): its
            # body cannot be translated, and passing it on as if it were in the client's
            # schema would be a 200 the client cannot read. Fail instead, in the client's schema.
            return self._untranslatable(pid)
        if provider is not None:
            self.provider = provider.kind
            self.provider_id = provider.id
            if not self.request_model and self.op is not None:  # the client named none: the backend's
                self.request_model = default_model(provider, self.op) or ""
        elif self.status == 503 and not msg.end_of_stream:
            pause = self._backend_pause()
            if pause > 0:
                return self._paused_reply(resp, pause)
        self.translation = self._translation(None if answered else provider)  # None: the client's own schema
        if self.translation is not None:
            changes = self.translation.on_headers(self.status, headers)
            mutation = resp.response_headers.response.header_mutation
            for key, value in changes.set.items():
                mutation.set_headers.append(set_header(key, value))
            mutation.remove_headers.extend(changes.remove)
            if self.translation.streaming and not msg.end_of_stream:
                self.first_chunk_at = None
                resp.mode_override.CopyFrom(_STREAMED)
                resp.dynamic_metadata.CopyFrom(self._metadata())  # in the access log even if cut
        if msg.end_of_stream:
            resp.dynamic_metadata.CopyFrom(self._finish())
        return resp

    def _backend_pause(self) -> float:
        if self.cooldowns is None or not self.backend:
            return 0.0
        return backend_pause(self.config, self.cooldowns, self.backend)

    def _paused_reply(self, resp: ep.ProcessingResponse, pause: float) -> ep.ProcessingResponse:
        """Envoy's "no healthy upstream" 503 because every provider is paused: a 429 with Retry-After.

        Hosts that the health check failed (a cluster rebuilt during a pause) leave Envoy
        no host; hosts only excluded by the attempt stage's header are still picked, and
        the attempt stage answers this same 429 then (attempt_stage.paused_reply).
        """
        seconds = max(1, math.ceil(pause))
        self.status = 429
        self.replacement_body = errors.error_body(
            status=429,
            message=f"Every provider of this backend asked the gateway to wait; retry after {seconds} s.",
            code="providers_paused",
            anthropic=self.op is not None and self.op.client_api == "anthropic",
        )
        mutation = resp.response_headers.response.header_mutation
        for key, value in ((":status", "429"), ("retry-after", str(seconds)), ("content-type", "application/json")):
            mutation.set_headers.append(set_header(key, value))
        mutation.remove_headers.append("content-length")
        return resp

    def _provider(self, pid: str | None) -> ProviderConfig | None:
        if not pid:
            return None
        provider = self.config.providers.get(pid)
        if provider is None and self.latest_config is not None:
            # The config may have arrived or changed since this request started.
            self.config = self.latest_config()
            provider = self.config.providers.get(pid)
        return provider

    def _untranslatable(self, pid: str) -> ep.ProcessingResponse:
        self.done = True
        anthropic = self.op is not None and self.op.client_api == "anthropic"
        return errors.immediate(
            status=503,
            message=f"The gateway has no configuration for provider {pid} yet and cannot translate its answer; "
            "retry shortly.",
            code="provider_not_configured",
            anthropic=anthropic,
        )

    def _translation(self, provider: ProviderConfig | None) -> ResponseTranslation | None:
        """The pair for (client API, the API of the provider that answered).

        With no provider (an Envoy local reply, or metadata missing) the response
        is taken to be in the client's own schema.
        """
        if self.op is None:
            return None
        model = fixed_model(provider, self.op) or self.request_model
        pair = pair_for(self.op, provider, model)
        if pair is None:
            return None
        ctx = RequestContext(
            provider=provider, op=self.op.name, model=model, stream=self.stream, encoding_format=self.encoding_format
        )
        return pair.response(ctx, client_wants_usage=self.client_wants_usage)

    def on_response_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        resp = ep.ProcessingResponse(response_body=ep.BodyResponse())
        tr = self.translation
        if self.replacement_body is not None:
            if msg.end_of_stream:
                resp.response_body.response.body_mutation.body = self.replacement_body
            else:
                resp.response_body.response.body_mutation.clear_body = True
        elif tr is not None:
            first = tr.streaming and self.first_chunk_at is None and bool(msg.body)
            if first:
                self.first_chunk_at = time.monotonic()
            out = tr.on_body(msg.body, msg.end_of_stream)
            if out is not None:
                resp.response_body.response.body_mutation.body = out
            if tr.streaming and not msg.end_of_stream and (first or tr.usage != self.reported_usage):
                self.usage, self.response_model = tr.usage, tr.response_model
                resp.dynamic_metadata.CopyFrom(self._metadata())  # usage so far, for the access log
        if msg.end_of_stream and not self.done:
            resp.dynamic_metadata.CopyFrom(self._finish())
        return resp

    def on_stream_closed(self) -> None:
        """Envoy closed the ext_proc stream: if the response had started but not ended, it was cut.

        Its metadata is already in Envoy; the metrics get the usage counted so far.
        """
        if self.done or self.status == 0 or self.replacement_body is not None:
            return
        self._finish(interrupted=True)
        log.warning(
            "response cut after it started: route %s, backend %s, provider %s, usage so far %s",
            self.route or "-",
            self.backend or "-",
            self.provider_id or "-",
            self.usage,
        )

    def _labels(self) -> metrics.RequestLabels:
        return metrics.RequestLabels(
            operation=self.op.semconv if self.op else "unknown",
            provider=self.provider,
            request_model=self.request_model,
            response_model=self.response_model or self.request_model,
            gateway=self.gateway,
            route=self.route,
            backend=self.backend,
        )

    def _finish(self, *, interrupted: bool = False) -> struct_pb2.Struct:
        """Metrics (2xx) and the final dynamic metadata, once; `interrupted`: the response was cut."""
        self.done = True
        if self.translation is not None:
            self.usage = self.translation.usage
            self.response_model = self.translation.response_model
        now = time.monotonic()
        if 200 <= self.status < 300:
            metrics.record(
                labels=self._labels(),
                usage=self.usage,
                duration_s=now - self.started,
                attempts=self.attempts,
                ttft_s=self.first_chunk_at - self.started if self.first_chunk_at else None,
                streamed_for_s=now - self.first_chunk_at if self.first_chunk_at else None,
                interrupted=interrupted,
            )
        return self._metadata()

    def _metadata(self) -> struct_pb2.Struct:
        """The access log's view of this request so far (Envoy merges it under `llmgw`)."""
        self.reported_usage = self.usage
        labels = self._labels()
        meta: dict[str, object] = {
            "gateway": self.gateway,
            "gen_ai.operation.name": labels.operation,
            "gen_ai.provider.name": self.provider,
            "provider": self.provider_id,
            "gen_ai.request.model": self.request_model,
            "gen_ai.response.model": labels.response_model,
        }
        if self.usage is not None:
            for key, value in (
                ("gen_ai.usage.input_tokens", self.usage.input),
                ("gen_ai.usage.output_tokens", self.usage.output),
                ("gen_ai.usage.cache_read_input_tokens", self.usage.cache_read),
            ):
                if value is not None:
                    meta[key] = value
        if self.first_chunk_at is not None:
            meta["gen_ai.server.time_to_first_token_ms"] = round((self.first_chunk_at - self.started) * 1000, 3)
        out = struct_pb2.Struct()
        out.update({wire.METADATA_NAMESPACE: meta})
        return out
