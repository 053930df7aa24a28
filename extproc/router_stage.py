"""Router stage: the HCM ext_proc filter on AI routes.

Request: reads the buffered body once, sets `x-gateway-model-name` and clears
the route cache so HTTPRoute header matches can route on the body's model
(a Gateway-wide model alias is resolved first, and only then is the body
rewritten here), and rejects bad input in the client's schema. Response: extracts usage (JSON
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

from extproc import cost, errors, metrics, trace_content, validation, wire
from extproc.attempt_stage import AttemptRequest, backend_pause
from extproc.contract import AuthnConfig, ExtprocConfig, LimitRuleConfig, ProviderConfig
from extproc.cooldown import CooldownBoard
from extproc.cost import CatalogPrice
from extproc.headers import attribute, header_dict, header_value_ok, provider_from_host_metadata, set_header
from extproc.identity import Identity
from extproc.operations import Operation, operation_of, refusal
from extproc.picker.pools import OBJECTIVE_HEADER, PoolPick, pick_for, pick_queued, pool_of, record_pick
from extproc.picker.prefix import blocks, prompt_text
from extproc.picker.scraper import LoadBoard
from extproc.policies import authn, jwt_claims, limits, transforms
from extproc.policies.guards import stages as guard_stages
from extproc.policies.guards.config import GuardConfig
from extproc.policies.guards.engine import record as record_guard
from extproc.policies.guards.stream import StreamGuard
from extproc.policies.guards.stream_hold import StreamHold, error_event
from extproc.prices import LOCAL_PRICES, PriceBook
from extproc.providers import default_model, fixed_model, operations_of
from extproc.store import FAIL_CLOSED, Store
from extproc.translate import pair_for
from extproc.translate.base import RequestContext, ResponseTranslation, TranslationError, encode
from extproc.usage import Usage

log = logging.getLogger("llmgw.extproc")

_CONTINUE = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
_STREAMED = pm.ProcessingMode(response_body_mode=pm.ProcessingMode.STREAMED)
_CONTINUE_BODY = ep.ProcessingResponse(request_body=ep.BodyResponse())
# Headers by which the attempt stage's own replies tell the router stage about them; on a direct
# route the router stage sends such a reply itself, so they must not reach the client.
_INTERNAL_REPLY_HEADERS = frozenset((wire.ANSWERED_HEADER, wire.GUARD_HEADER))


def _own_reply(resp: ep.ProcessingResponse) -> ep.ProcessingResponse:
    """An attempt-stage reply the router stage answers itself, without the stage-to-stage headers."""
    if resp.HasField("immediate_response"):
        headers = resp.immediate_response.headers.set_headers
        keep = [h for h in headers if h.header.key not in _INTERNAL_REPLY_HEADERS]
        if len(keep) != len(headers):
            del headers[:]
            headers.extend(keep)
    return resp


# A request's output bound, for its token reservation (OpenAI chat, Responses, Anthropic).
_MAX_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


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
    # --- failure metrics (extproc/metrics.py: every request counted once, with its error.type)
    error_type: str = ""  # the gateway's own error code, when it answered itself
    code_details: str = ""  # Envoy's response code details (via_upstream, upstream_reset..., ...)
    recorded: bool = False  # counted in the metrics
    recorded_error_type: str = ""  # what the metrics said (also the span's and access log's error.type)
    # --- trace content (extproc/trace_content.py), only with the operator's opt-in
    record_content: bool = False
    input_messages: str | None = None
    output_messages: str | None = None
    # --- prompt guards (extproc/policies/guards) ---
    defer_direct: bool = False  # a direct route's guarded body waits for _direct_guards
    deferred: tuple[ep.HttpBody, dict[str, Any]] | None = None
    response_guards: tuple[GuardConfig, ...] = ()  # for a complete JSON response
    stream_guard: StreamGuard | None = None  # regex guards on a streamed response
    stream_hold: StreamHold | None = None  # remote guards on a streamed response
    response_headers: dict[str, str] = field(default_factory=dict)
    guard_request: str = ""  # decisions for the access log ("kind:action,...")
    guard_response: str = ""
    skipped_guards: tuple[str, ...] = ()  # response guards a stream does not run ("kind:not_applied")
    # --- policies (extproc/policies/): who is calling, set on the request headers
    identity: Identity | None = None  # None: anonymous (or no API key policy)
    authn: AuthnConfig | None = None  # the authentication of the route matched on the headers
    # --- limits and cost (extproc/policies/limits.py, extproc/cost.py) -------------------------
    store: Store | None = None  # the limits store (None: this worker enforces no limits)
    failure_mode: str = FAIL_CLOSED  # when the store is unreachable
    limit_rules: tuple[LimitRuleConfig, ...] = ()
    limit_header_values: dict[str, str] = field(default_factory=dict)  # for `header:<name>` descriptors
    applied_limits: tuple[limits.Applied, ...] = ()
    limit_headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-* on the response
    reserved_tokens: tuple[float, ...] = ()  # per applied limit, given back at charge
    estimated_tokens: int = 0  # this request's token reservation (limits.estimate_tokens)
    cost_usd: float | None = None
    prices: PriceBook = LOCAL_PRICES  # catalog prices (the worker's asks the control plane)
    price_wanted: tuple[str, str] | None = None  # (kind, model) priced by a fallback: the server asks after
    pending: Awaitable[None] | None = None  # the charge after the response; the server awaits it
    body_aliased: bool = False  # the body's model was an alias: the body is rewritten (parse -> forward)
    satisfied: frozenset[str] | None = None  # the route authentications the caller passed (None: none checked)

    # --- request ---------------------------------------------------------------------------

    def on_request_headers(
        self,
        msg: ep.HttpHeaders,
        *,
        route_name: object = None,
        jwt_found: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ep.ProcessingResponse:
        return self.note_immediate(self._on_request_headers(msg, route_name=route_name, jwt_found=jwt_found))

    def _on_request_headers(
        self, msg: ep.HttpHeaders, *, route_name: object, jwt_found: Mapping[str, Mapping[str, Any]] | None
    ) -> ep.ProcessingResponse:
        headers = header_dict(msg)
        self.path = headers.get(":path", "")
        self.op = operation_of(self.path)  # the client's schema for a refusal; the routes map refines it below
        authn_mutation: ep.HeaderMutation | None = None
        own = wire.authn_of_route_name(route_name) if isinstance(route_name, str) else None
        if own is not None and own not in self.config.authn and self.latest_config is not None:
            self.config = self.latest_config()  # a route newer than this request's config snapshot
        # The route the request matched (the one a guard route stands in front of, on the first lookup).
        self.route_name = route_name.removesuffix(wire.AUTHN_GUARD_SUFFIX) if isinstance(route_name, str) else None
        self.objective = headers.get(OBJECTIVE_HEADER, "")
        pid = self.config.direct_routes.get(route_name) if isinstance(route_name, str) else None
        provider = self.config.providers.get(pid) if pid else None
        # The backend's policies.ai.routes (operation per path suffix, or raw passthrough). Known before
        # authenticating: a refusal is in the client's schema (Anthropic's on /v1/messages).
        routes = provider.routes if provider is not None else self.config.route_types.get(self.route_name or "", ())
        self.op = operation_of(self.path, routes)
        if own is not None and own not in self.config.authn:
            # Envoy routes to an authentication this worker has no config for (yet): never unchecked.
            return self._error(503, "The gateway has no configuration for this route yet; retry shortly.", "not_ready")
        if self.config.gateway_authn.get(self.gateway):
            refused, authn_mutation = self._authenticate(headers, route_name, jwt_found or {})
            if refused is not None:
                return refused
        if self.route_name is not None:
            self.limit_rules = self.config.limits.get(self.route_name, ())
            for rule in self.limit_rules:
                for key in rule.keys:
                    if key.startswith("header:") and (value := headers.get(key[7:].lower())):
                        self.limit_header_values[key] = value
        # The operation allowlist, on the client's path (before any route rewrite): what the gateway
        # does not know never reaches a provider with its credential, and no provider is contacted.
        supported = operations_of(provider) | {"models"} if provider is not None else None
        refused = refusal(headers.get(":method", ""), self.path, supported, provider.kind if provider else "", routes)
        if refused is not None:
            self.done = True
            return errors.immediate(
                status=refused.status, message=refused.message, code=refused.code, anthropic=refused.anthropic
            )
        if self.op and self.op.name == "models":
            return self._models()
        if msg.end_of_stream and self.op and self.op.needs_model:
            return self._error(400, "The request has no body; a JSON body with `model` is required.", "missing_body")
        if msg.end_of_stream:
            self.limit_rules = ()  # no body follows: limits apply to API operations with a body
        if provider is not None:
            # The route cannot change after the body is read: do the provider work here and
            # save the attempt stage's ext_proc stream (controlplane/gatewayapi/direct.py).
            self.direct = AttemptRequest(config=self.config, route=wire.route_of_route_name(str(route_name)) or "")
            started = self.direct.start(provider, headers, end_of_stream=msg.end_of_stream)
            if authn_mutation is not None and started.WhichOneof("response") == "request_headers":
                # The route cannot change: no guard header needed; the client's key headers go.
                theirs = started.request_headers.response.header_mutation
                theirs.remove_headers.extend(h for h in authn_mutation.remove_headers if h != wire.AUTHN_HEADER)
                theirs.set_headers.extend(h for h in authn_mutation.set_headers if h.header.key != wire.AUTHN_HEADER)
            return _own_reply(started)
        if authn_mutation is not None:
            # On a guard route (the first lookup of a route that authenticates), match again now that
            # the request carries what it was authenticated for (controlplane/xds/route.py authn_guard).
            guarded = isinstance(route_name, str) and route_name.endswith(wire.AUTHN_GUARD_SUFFIX)
            return ep.ProcessingResponse(
                request_headers=ep.HeadersResponse(
                    response=ep.CommonResponse(header_mutation=authn_mutation, clear_route_cache=guarded)
                )
            )
        return _CONTINUE

    def _authenticate(
        self, headers: dict[str, str], route_name: object, jwt_found: Mapping[str, Mapping[str, Any]]
    ) -> tuple[ep.ProcessingResponse | None, ep.HeaderMutation]:
        """Check the caller against every route authentication of this Gateway (extproc/policies/).

        The authentication of the route matched on the headers decides a refusal here (API
        keys; Envoy's jwt_authn already enforced that route's JWT policy); the ids of those the
        caller satisfies go in `x-llmgw-authn` for the route guard Envoy checks after model
        routing (controlplane/xds/route.py `authn_guard`).
        """
        own = wire.authn_of_route_name(route_name) if isinstance(route_name, str) else None
        satisfied: list[str] = []
        remove: set[str] = set()
        own_identity: Identity | None = None
        first_identity: Identity | None = None
        for aid in self.config.gateway_authn.get(self.gateway, ()):
            cfg = self.config.authn.get(aid)
            if cfg is None:
                continue
            ok, ident = True, None
            if cfg.api_key is not None:
                policy = authn.compile_policy(cfg.api_key)
                # The key was for the gateway: it goes no further. The SDK headers only on the route that
                # consumed them (a passthrough route elsewhere forwards its client's own key); a custom
                # location header never (the attempt stage strips the SDK headers on every route anyway).
                if aid == own:
                    remove.update(authn.credential_headers(policy))
                elif policy.header is not None:
                    remove.add(policy.header)
                outcome = authn.authenticate(policy=policy, headers=headers)
                if outcome.refused and aid == own:
                    self.done = True
                    anthropic = self.op is not None and self.op.client_api == "anthropic"
                    return errors.immediate(
                        status=401, message=outcome.message, code="invalid_api_key", anthropic=anthropic
                    ), ep.HeaderMutation()
                ok, ident = not outcome.refused, outcome.identity
            if cfg.jwt is not None:
                if aid == own or cfg.jwt.header not in authn.DEFAULT_HEADERS:
                    remove.add(cfg.jwt.header)
                jwt_ok, jwt_ident = jwt_claims.check(policy=cfg.jwt, found=jwt_found, headers=headers)
                if not jwt_ok and aid == own:  # Envoy enforced it already, unless the policy could not be read
                    self.done = True
                    anthropic = self.op is not None and self.op.client_api == "anthropic"
                    return errors.immediate(
                        status=401, message="Invalid or missing token.", code="invalid_token", anthropic=anthropic
                    ), ep.HeaderMutation()
                ok, ident = ok and jwt_ok, ident or jwt_ident
            if not ok:
                continue
            satisfied.append(aid)
            if aid == own:
                own_identity = ident
            elif first_identity is None:
                first_identity = ident
        self.identity = own_identity if own is not None else first_identity
        self.satisfied = frozenset(satisfied)
        self.authn = self.config.authn.get(own) if own is not None else None
        mutation = ep.HeaderMutation(set_headers=[set_header(wire.AUTHN_HEADER, "," + ",".join(satisfied) + ",")])
        mutation.remove_headers.extend(sorted(remove))
        # traffic.callerIdentity.upstreamHeaders: the identity (never the key) to the provider; a
        # client's own copy of any such header of this Gateway is removed.
        exported: set[str] = set()
        if self.authn is not None and self.identity is not None:
            for name, header in sorted(self.authn.upstream_headers.items()):
                value = self.identity.field(name)
                if value is not None and header_value_ok(value):
                    mutation.set_headers.append(set_header(header, value))
                    exported.add(header)
        for aid in self.config.gateway_authn.get(self.gateway, ()):
            cfg = self.config.authn.get(aid)
            for header in cfg.upstream_headers.values() if cfg is not None else ():
                if header not in exported and header not in mutation.remove_headers:
                    mutation.remove_headers.append(header)
        return None, mutation

    def on_request_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        """The request body without limits (a route with none, or no store)."""
        parsed = self._guarded(self._parse_body, msg)
        if isinstance(parsed, ep.ProcessingResponse):
            return parsed
        return self._guarded(self._forward_body, msg, parsed)

    async def process_request_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        """The request body in the documented order: (authenticate,) limit, then guard, transform, translate."""
        # On a guarded direct route the request guards run before the provider work (deferred).
        self.defer_direct = self.direct is not None and self.direct.guards() is not None
        if not self.limit_rules or self.store is None:
            resp = self.on_request_body(msg)
        else:
            parsed = self._guarded(self._parse_body, msg)
            if isinstance(parsed, ep.ProcessingResponse):
                return parsed
            refused = await self._limit()
            if refused is not None:
                return self.note_immediate(refused)
            resp = self._guarded(self._forward_body, msg, parsed)
        return await self._direct_guards(resp)

    def _guarded(self, step: Callable[..., Any], *args: Any) -> Any:
        try:
            out = step(*args)
        except TranslationError as exc:  # the client's mistake: a 400 in its schema, nothing to log
            out = self._error(exc.status, exc.message, exc.code, param=exc.param)
        except Exception:  # our bug: visible in the log, a 500 in the client's schema (never "retry shortly")
            log.exception("router stage failed on the request body (%s)", self.op.name if self.op else "no operation")
            out = self._error(500, "The gateway failed to process the request.", "gateway_error")
        if not isinstance(out, ep.ProcessingResponse):
            return out
        if out.HasField("immediate_response") and self.applied_limits:
            self._settle_limits()  # refused after the limit check: its token reservation goes back
        return self.note_immediate(out)

    def note_immediate(self, resp: ep.ProcessingResponse) -> ep.ProcessingResponse:
        """Count an answer this stage gives itself (its errors, `/models`, a direct route's refusal).

        Envoy does not pass an immediate response back through the filter that sent it, so
        this is the only place such a request is seen. Returns `resp` unchanged.
        """
        if resp.HasField("immediate_response") and not self.recorded:
            imm = resp.immediate_response
            self.status = int(imm.status.code)
            details = imm.details.removeprefix("llmgw_")
            self.error_type = details if self.status >= 400 else ""
            self.attempts = 0  # answered here: no upstream attempt
            self._record(now=time.monotonic())
            resp.dynamic_metadata.CopyFrom(self._metadata())  # the access log and the trace see it too
        return resp

    # --- limits --------------------------------------------------------------------------------

    async def _limit(self) -> ep.ProcessingResponse | None:
        assert self.store is not None
        self.applied_limits = limits.applicable(self.limit_rules, value=self._descriptor, now=time.time())
        decision = await limits.check(
            self.applied_limits, store=self.store, failure_mode=self.failure_mode, tokens=self.estimated_tokens
        )
        if decision.allowed:
            self.limit_headers = decision.headers
            self.reserved_tokens = decision.reserved
            return None
        self.applied_limits = ()  # refused: nothing to charge
        if decision.status == 429:
            limits.REJECTIONS.labels(self.gateway, self._route_key(), decision.kind).inc()
        self.done = True
        return errors.immediate(
            status=decision.status,
            message=decision.message,
            code="rate_limit_exceeded" if decision.status == 429 else "limits_unavailable",
            anthropic=self.op is not None and self.op.client_api == "anthropic",
            headers=decision.headers,
        )

    def _descriptor(self, key: str) -> str | None:
        """A limit descriptor's value for this request (None: the rule does not apply to it)."""
        if key == "route":
            return self._route_key() or None
        if key == "model":
            return self.request_model or None
        if key == "backend":
            return self.direct.provider.backend if self.direct is not None and self.direct.provider else None
        if key.startswith("header:"):
            return self.limit_header_values.get(key)
        return self.identity.field(key) if self.identity is not None else None

    def _route_key(self) -> str:
        return self.route or wire.route_of_route_name(self.route_name or "") or ""

    def _settle_limits(self, *, interrupted: bool = False) -> None:
        """Price the response (once) and queue the charge of its real usage."""
        provider = self._provider(self.provider_id) if self.provider_id else None
        model = self.response_model or self.request_model
        self.cost_usd = cost.request_cost(
            usage=self.usage,
            kind=self.provider,
            model=model,
            overrides=provider.pricing if provider else (),
            catalog=self._catalog_price,
        )
        if self.applied_limits and self.store is not None:
            self.pending = limits.charge(
                self.applied_limits,
                store=self.store,
                usage=self.usage,
                cost_usd=self.cost_usd,
                failure_mode=self.failure_mode,
                reserved=self.reserved_tokens,
                interrupted=interrupted,
            )
            self.applied_limits = ()

    def _catalog_price(self, kind: str, model: str) -> CatalogPrice | None:
        """The worker's price for `model`; a response model not asked about yet is priced at the request
        model's price (the catalog's dated variants share it) and asked about after the response."""
        if self.prices.knows(kind, model):
            return self.prices.get(kind, model)
        self.price_wanted = (kind, model)
        if model != self.request_model and self.prices.knows(kind, self.request_model):
            return self.prices.get(kind, self.request_model)
        return None

    def price_to_ask(self) -> tuple[str, str] | None:
        """(kind, request model) once the provider is known and the worker has no price for it yet."""
        if self.provider and self.request_model and not self.prices.knows(self.provider, self.request_model):
            return self.provider, self.request_model
        return None

    async def settle(self) -> None:
        """Run the queued charge (the server awaits this after each response message)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending

    # --- request body --------------------------------------------------------------------------

    def _parse_body(self, msg: ep.HttpBody) -> ep.ProcessingResponse | dict[str, Any]:
        op = self.op
        try:
            body = orjson.loads(msg.body)
        except orjson.JSONDecodeError as exc:
            if op is None:  # not our API (a passthrough path): a direct route still gets its credential
                return (
                    self.direct.on_request_body(msg)
                    if self.direct
                    else ep.ProcessingResponse(request_body=ep.BodyResponse())
                )
            return self._error(
                400, f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.", "invalid_json"
            )
        if not isinstance(body, dict):
            if op is None:
                return (
                    self.direct.on_request_body(msg)
                    if self.direct
                    else ep.ProcessingResponse(request_body=ep.BodyResponse())
                )
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
        aliased = False
        if op is not None and isinstance(model, str) and model and self.config.aliases:
            # A gateway-wide model alias routes like its target, and every backend the route may
            # reach receives the target (extproc/policies/transforms.py; docs/ai-transforms.md).
            target = transforms.resolve_alias(model, self.config.aliases.get(self.gateway) or {})
            if target is not None and target != model:
                model = body["model"] = target
                aliased = True
                if self.direct is not None:
                    self.direct.routed_model = target
                    self.direct.body_changed = True
        self.request_model = model if isinstance(model, str) else ""
        self.body_aliased = aliased
        if self.limit_rules:
            bound = next((body[k] for k in _MAX_OUTPUT_FIELDS if isinstance(body.get(k), int)), None)
            self.estimated_tokens = limits.estimate_tokens(body_bytes=len(msg.body), max_output=bound)
        if self.record_content and op is not None:
            self.input_messages = trace_content.input_messages(body)
        encoding = body.get("encoding_format")
        self.encoding_format = encoding if isinstance(encoding, str) else None
        if op is not None and op.streams and body.get("stream") is True:
            self.stream = True
            options = body.get("stream_options")
            self.client_wants_usage = not op.stream_usage_option or (
                isinstance(options, dict) and options.get("include_usage") is True
            )
        return body

    def _forward_body(self, msg: ep.HttpBody, body: dict[str, Any]) -> ep.ProcessingResponse:
        if self.direct is not None:
            if self.defer_direct:
                self.deferred = (msg, body)
                return _CONTINUE_BODY
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
        if self.body_aliased:  # the one body this stage rewrites: the model, before any provider sees it
            new_body = encode(body)
            common.header_mutation.set_headers.append(set_header("content-length", str(len(new_body))))
            common.body_mutation.body = new_body
        return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))

    def _pick_endpoint(self, common: ep.CommonResponse, body: dict[str, object]) -> ep.ProcessingResponse | None:
        """InferencePools without a picker of their own: llmgw picks (extproc/picker); None: go on.

        Called last on the request body, after authentication (request headers) and the body's
        checks, so a request refused by any of them never counts in the picker's state. A
        request that model routing moves to a pool route it is not authenticated for is not
        picked for either: Envoy's authentication guard answers it 401 (controlplane/xds/route.py).
        """
        if self.loads is None or not self.config.pools:
            return None
        found = pool_of(self.config, gateway=self.gateway, route_name=self.route_name, model=self.request_model)
        if found is None:
            return None
        route, pool = found
        aid = wire.authn_of_route_name(route)
        if aid is not None and (self.satisfied is None or aid not in self.satisfied):
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
        return self.note_immediate(refused) if refused is not None else resp

    async def _direct_guards(self, resp: ep.ProcessingResponse) -> ep.ProcessingResponse:
        """On a guarded direct route, the deferred request guards, then the provider work."""
        if self.deferred is None:
            return _own_reply(resp) if self.direct is not None else resp
        body_msg, parsed = self.deferred
        self.deferred = None
        assert self.direct is not None
        resp = _own_reply(await self.direct.on_request_body_async(body_msg, parsed=parsed))
        if resp.HasField("immediate_response"):
            self.done = True
        ours = resp.dynamic_metadata.fields.get(wire.METADATA_NAMESPACE)
        if ours is not None and wire.GUARD_REQUEST_METADATA_KEY in ours.struct_value.fields:
            self.guard_request = ours.struct_value.fields[wire.GUARD_REQUEST_METADATA_KEY].string_value
        return resp

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
        return self.note_immediate(self._on_response_headers(req))

    def _on_response_headers(self, req: ep.ProcessingRequest) -> ep.ProcessingResponse:
        msg = req.response_headers
        headers = header_dict(msg)
        resp = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
        for key, value in self.limit_headers.items():  # x-ratelimit-* on every response of a limited route
            resp.response_headers.response.header_mutation.set_headers.append(set_header(key, value))
        original = headers.pop(wire.UPSTREAM_STATUS_HEADER, None)
        if original is not None:  # the attempt stage turned a 429 into a 503 for outlier detection
            headers[":status"] = original
            mutation = resp.response_headers.response.header_mutation
            mutation.set_headers.append(set_header(":status", original))
            mutation.remove_headers.append(wire.UPSTREAM_STATUS_HEADER)
        if headers.pop(wire.IMMEDIATE_HC_FAIL_HEADER, None) is not None:  # the attempt stage paused the provider
            resp.response_headers.response.header_mutation.remove_headers.append(wire.IMMEDIATE_HC_FAIL_HEADER)
        answered_code = headers.pop(wire.ANSWERED_HEADER, None)  # the attempt stage's own error (its code)
        answered = answered_code is not None
        if answered:
            resp.response_headers.response.header_mutation.remove_headers.append(wire.ANSWERED_HEADER)
            self.error_type = _bounded_code(answered_code or "")
        details = attribute(req, "response.code_details")
        if isinstance(details, str):
            self.code_details = details
        guarded = headers.pop(wire.GUARD_HEADER, None)  # the attempt stage's guard rejection
        if guarded is not None:
            self.guard_request = guarded
            resp.response_headers.response.header_mutation.remove_headers.append(wire.GUARD_HEADER)
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
            self._arm_response_guards(headers, resp, answered=answered, end_of_stream=msg.end_of_stream)
            if self.translation.streaming and not msg.end_of_stream:
                self.first_chunk_at = None
                resp.mode_override.CopyFrom(_STREAMED)
                resp.dynamic_metadata.CopyFrom(self._metadata())  # in the access log even if cut
        if msg.end_of_stream:
            resp.dynamic_metadata.CopyFrom(self._finish())
        return resp

    def _arm_response_guards(
        self, headers: dict[str, str], resp: ep.ProcessingResponse, *, answered: bool, end_of_stream: bool
    ) -> None:
        """The backend's response guards for this response, if any apply (guard after translate)."""
        tr = self.translation
        policy = self.config.guards.get(self.backend) if self.backend and not answered else None
        guards = guard_stages.response_guards(policy, op=self.op, status=self.status)
        if not guards or tr is None or self.op is None or end_of_stream or policy is None:
            return
        self.response_headers = headers
        if tr.streaming:
            self.stream_guard, self.stream_hold, skipped = guard_stages.stream_guards(
                guards, op=self.op, streaming_enabled=policy.streaming
            )
            for kind in skipped:  # agentgateway's default: streamed responses are not guarded
                record_guard(guard=kind, phase="response", action="not_applied", route=self.route)
            self.skipped_guards = tuple(f"{k}:not_applied" for k in skipped)
            self.guard_response = ",".join(self.skipped_guards)
        else:
            self.response_guards = guards
        # The body may change length: Envoy recomputes it for the buffered body; a stream is chunked.
        resp.response_headers.response.header_mutation.remove_headers.append("content-length")

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
        self.error_type = "providers_paused"
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
            guard_changed = False
            if self.stream_guard is not None:
                out = self.stream_guard.feed(msg.body if out is None else out, msg.end_of_stream)
                guard_changed = self._note_stream_guard()
            if self.stream_hold is not None:
                out = self.stream_hold.hold(msg.body if out is None else out)
            if out is not None:
                resp.response_body.response.body_mutation.body = out
            if tr.streaming and not msg.end_of_stream and (first or guard_changed or tr.usage != self.reported_usage):
                self.usage, self.response_model = tr.usage, tr.response_model
                resp.dynamic_metadata.CopyFrom(self._metadata())  # usage so far, for the access log
        if msg.end_of_stream and not self.done and not self.response_guards:
            if self.record_content and tr is not None and not tr.streaming and 200 <= self.status < 300:
                mutated = resp.response_body.response.body_mutation.body
                self.output_messages = trace_content.output_messages(mutated or msg.body)
            resp.dynamic_metadata.CopyFrom(self._finish())
        return resp

    def _note_stream_guard(self) -> bool:
        """Update the streamed guards' access-log field; True when it changed (report it now)."""
        sg = self.stream_guard
        if sg is None:
            return False
        summary = ",".join(f"{k}:{a}" for k, a in sg.summary())
        if self.skipped_guards:
            summary = ",".join((summary, *self.skipped_guards))
        changed = summary != self.guard_response
        self.guard_response = summary
        return changed

    async def on_response_body_async(self, msg: ep.HttpBody) -> ep.ProcessingResponse:
        """`on_response_body`, then the response guards on a complete JSON body (translate, then guard)."""
        resp = self.on_response_body(msg)
        guards, op = self.response_guards, self.op
        if not guards or op is None or not msg.end_of_stream or self.replacement_body is not None:
            if guards and msg.end_of_stream and not self.done:  # no guarding after all: finish as usual
                resp.dynamic_metadata.CopyFrom(self._finish())
            if self.stream_guard is not None and msg.end_of_stream:
                self._record_stream_guard()
            if self.stream_hold is not None and msg.end_of_stream:
                return await self._release_stream(resp)
            return resp
        # The JSON answer is complete and translated: guard it, then finish (metrics see the final status).
        mutation = resp.response_body.response
        body = mutation.body_mutation.body if mutation.HasField("body_mutation") else msg.body
        try:
            new_body, outcome = await guard_stages.guard_response_json(
                guards, op=op, body=body, headers=self.response_headers, route=self.route
            )
        except Exception:
            log.exception("response guards failed (%s)", op.name)
            self.status = 500
            out = self._error(500, "The gateway failed to process the response.", "gateway_error")
            out.dynamic_metadata.CopyFrom(self._finish())
            return out
        self.guard_response = outcome.summary()
        if outcome.rejection is not None:
            rejection = outcome.rejection
            self.status = rejection.status
            out = self._error(rejection.status, rejection.message, rejection.code)
            out.dynamic_metadata.CopyFrom(self._finish())
            return out
        if new_body is not None:
            mutation.body_mutation.body = new_body
        resp.dynamic_metadata.CopyFrom(self._finish())
        return resp

    async def _release_stream(self, resp: ep.ProcessingResponse) -> ep.ProcessingResponse:
        """The end of a held stream: the remote guards' verdict decides what the client gets."""
        hold = self.stream_hold
        assert hold is not None
        try:
            out = await hold.release(headers=self.response_headers, route=self.route)
        except Exception:
            log.exception("response guards failed on a held stream")
            out = error_event("The gateway failed to process the response.", anthropic=hold.anthropic)
        resp.response_body.response.body_mutation.body = out
        decisions = hold.outcome.summary() if hold.outcome is not None else ""
        self.guard_response = ",".join(x for x in (self.guard_response, decisions) if x)
        resp.dynamic_metadata.CopyFrom(self._metadata())
        return resp

    def _record_stream_guard(self) -> None:
        sg = self.stream_guard
        if sg is None:
            return
        for kind, action in sg.summary():
            record_guard(guard=kind, phase="response", action=action, route=self.route)

    def on_stream_closed(self) -> None:
        """Envoy closed the ext_proc stream: if the response had started but not ended, it was cut.

        Its metadata is already in Envoy; the metrics get the usage counted so far.
        """
        if self.status == 0 and not self.recorded and self.op is not None:
            # No response ever reached this stage: the client went away or the request failed
            # before any answer (counted, so that error rates include it).
            self.error_type = "no_response"
            self._record(now=time.monotonic())
            return
        if self.done or self.status == 0 or self.replacement_body is not None:
            return
        self._record_stream_guard()
        self._finish(interrupted=True)
        log.warning(
            "response cut after it started: route %s, backend %s, provider %s, usage so far %s",
            self.route or "-",
            self.backend or "-",
            self.provider_id or "-",
            self.usage,
        )

    def _labels(self) -> metrics.RequestLabels:
        caller = ("",) * len(metrics.CALLER_FIELDS)
        if self.identity is not None and self.authn is not None and self.authn.metric_labels:
            allowed = self.authn.metric_labels
            caller = tuple((self.identity.field(f) or "") if f in allowed else "" for f in metrics.CALLER_FIELDS)
        return metrics.RequestLabels(
            caller=caller,
            operation=self.op.semconv if self.op else "unknown",
            provider=self.provider,
            request_model=self.request_model,
            response_model=self.response_model or self.request_model,
            gateway=self.gateway,
            route=self.route,
            backend=self.backend,
        )

    def _finish(self, *, interrupted: bool = False) -> struct_pb2.Struct:
        """Metrics (every status) and the final dynamic metadata, once; `interrupted`: the response was cut."""
        self.done = True
        if self.translation is not None:
            self.usage = self.translation.usage
            self.response_model = self.translation.response_model
        self._settle_limits(interrupted=interrupted)
        self._record(now=time.monotonic(), interrupted=interrupted)
        return self._metadata()

    def _record(self, *, now: float, interrupted: bool = False) -> None:
        """Count this request once, whatever its outcome (extproc/metrics.py)."""
        if self.recorded:
            return
        self.recorded = True
        ok = 200 <= self.status < 300
        error_type = "" if ok and not interrupted else (self.error_type or self._envoy_error_type())
        if interrupted:
            error_type = "interrupted"
        self.recorded_error_type = error_type
        if self.direct is not None and self.direct.provider is not None and self.attempts > 1:
            p = self.direct.provider  # a direct route's retries never reach the attempt stage
            for _ in range(self.attempts - 1):
                metrics.record_attempt(backend=p.backend, provider=p.id, kind=p.kind)
        metrics.record(
            labels=self._labels(),
            usage=self.usage if ok else None,
            duration_s=now - self.started,
            attempts=self.attempts if self.status else 0,
            ttft_s=self.first_chunk_at - self.started if ok and self.first_chunk_at else None,
            streamed_for_s=now - self.first_chunk_at if ok and self.first_chunk_at else None,
            interrupted=interrupted,
            status=self.status,
            error_type=error_type,
            cost_usd=self.cost_usd if ok else None,
        )

    def _envoy_error_type(self) -> str:
        """error.type of a response this stage did not make: the provider's status, or why Envoy answered."""
        return envoy_error_type(self.status, self.code_details)

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
            # Global token limits took 1 hit at the start; Envoy sends the rest at stream end.
            meta[wire.RLS_TOKEN_HITS_KEY] = str(max(0, (self.usage.input or 0) + (self.usage.output or 0) - 1))
        if self.cost_usd is not None:
            meta["cost_usd"] = round(self.cost_usd, 9)
        if self.recorded_error_type:
            meta["error.type"] = self.recorded_error_type
        if self.input_messages is not None:
            meta[wire.INPUT_MESSAGES_KEY] = self.input_messages
        if self.output_messages is not None:
            meta[wire.OUTPUT_MESSAGES_KEY] = self.output_messages
        if self.guard_request:
            meta[wire.GUARD_REQUEST_METADATA_KEY] = self.guard_request
        if self.guard_response:
            meta[wire.GUARD_RESPONSE_METADATA_KEY] = self.guard_response
        if self.identity is not None:
            for name in ("key_id", "user", "team", "tenant"):
                known = self.identity.field(name)
                if known is not None:
                    meta[name] = known
        if self.first_chunk_at is not None:
            meta["gen_ai.server.time_to_first_token_ms"] = round((self.first_chunk_at - self.started) * 1000, 3)
        out = struct_pb2.Struct()
        out.update({wire.METADATA_NAMESPACE: meta})
        return out


def _bounded_code(code: str) -> str:
    """An error code from a response header, kept only if it looks like one of ours (bounded labels)."""
    if 0 < len(code) <= 40 and code.replace("_", "").isalnum() and code.islower():
        return code
    return "_OTHER"


# Envoy's response code details -> error.type, first match wins (bounded label values).
_DETAILS_ERROR_TYPES = (
    ("timeout", "timeout"),
    ("upstream_reset", "upstream_reset"),
    ("no_healthy_upstream", "no_healthy_upstream"),
    ("route_not_found", "route_not_found"),
    ("cluster_not_found", "cluster_not_found"),
    ("overflow", "upstream_overflow"),
    ("ext_proc", "extproc_error"),
    ("llmgw_", ""),
)


def envoy_error_type(status: int, details: str) -> str:
    """The semconv `error.type` of a failed response: the HTTP status when the provider sent it,
    Envoy's reason when Envoy answered (a reset, a timeout, no healthy provider), `_OTHER` else."""
    if not details or details == "via_upstream":
        return str(status) if status else "no_response"
    for needle, error_type in _DETAILS_ERROR_TYPES:
        if needle in details:
            return error_type or _bounded_code(details.removeprefix("llmgw_"))
    return "_OTHER"
