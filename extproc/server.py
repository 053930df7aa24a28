"""The ext_proc gRPC service: one stream per HTTP request per stage.

The stage comes from the stream's initial metadata (set per filter by the
control plane), so one worker serves both stages and either stage of a
request may land on any worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Protocol

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc import errors, wire
from extproc.attempt_stage import AttemptRequest
from extproc.configclient import ConfigHolder
from extproc.contract import ExtprocConfig
from extproc.cooldown import CooldownBoard
from extproc.headers import attribute
from extproc.operations import Operation
from extproc.picker.scraper import LoadBoard
from extproc.policies import jwt_claims
from extproc.prices import LOCAL_PRICES, PriceBook
from extproc.router_stage import RouterRequest
from extproc.store import FAIL_CLOSED, Store

log = logging.getLogger("llmgw.extproc")

# How long a request whose route is newer than this worker's config waits for that config
# (Envoy's xDS and the workers' config stream arrive separately; the gap is milliseconds).
_CONFIG_CATCH_UP_S = 2.0


class StreamContext(Protocol):
    """What `Process` needs of its transport (extproc/grpc_service.py): the stream's invocation metadata."""

    def invocation_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


class ExternalProcessor:
    def __init__(
        self,
        holder: ConfigHolder,
        *,
        cooldowns: CooldownBoard | None = None,
        store: Store | None = None,
        failure_mode: str = FAIL_CLOSED,
        loads: LoadBoard | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self.holder = holder
        self.prices = prices if prices is not None else LOCAL_PRICES  # catalog prices (extproc/prices.py)
        self.cooldowns = cooldowns if cooldowns is not None else CooldownBoard()
        self.store = store  # limits and budgets (extproc/store); None: no limits enforced
        self.failure_mode = failure_mode
        self.loads = loads if loads is not None else LoadBoard()  # InferencePools llmgw picks for
        # Prompts and completions in the dynamic metadata (traces), only when the operator opted in.
        self.record_content = os.environ.get(wire.TRACE_CONTENT_ENV) == "1"

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: StreamContext
    ) -> AsyncGenerator[ep.ProcessingResponse, None]:
        stage = gateway = ""
        for key, value in context.invocation_metadata() or ():
            if key == wire.STAGE_METADATA_KEY:
                stage = str(value)
            elif key == wire.GATEWAY_METADATA_KEY:
                gateway = str(value)
        config = self.holder.current
        if stage == wire.STAGE_ATTEMPT:
            attempt = AttemptRequest(config=config, cooldowns=self.cooldowns)
            try:
                async for req in request_iterator:
                    which = req.WhichOneof("request")
                    try:
                        if which == "request_headers":
                            yield attempt.on_request_headers(req)
                        elif which == "request_body":
                            yield await attempt.on_request_body_async(req.request_body)
                        elif which == "response_headers":
                            yield attempt.on_response_headers(req)
                        else:
                            yield _passthrough(which)
                    except Exception:
                        yield _failed("attempt", which, attempt.op)
            finally:
                attempt.on_stream_closed()  # a failover attempt that got no answer counts as failed
            return
        holder = self.holder
        router = RouterRequest(
            gateway=gateway,
            config=config,
            cooldowns=self.cooldowns,
            latest_config=lambda: holder.current,
            store=self.store,
            failure_mode=self.failure_mode,
            record_content=self.record_content,
            loads=self.loads,
            prices=self.prices,
        )
        try:
            async for req in request_iterator:
                which = req.WhichOneof("request")
                try:
                    if which == "request_headers":
                        route_name = attribute(req, "xds.route_name")
                        own = wire.authn_of_route_name(route_name) if isinstance(route_name, str) else None
                        if own is not None and own not in router.config.authn:
                            # Envoy routed by an older config than this worker's (use that one), or by a
                            # newer one (wait for it).
                            older = holder.recent(_knows(own))
                            router.config = older or await holder.until(_knows(own), _CONFIG_CATCH_UP_S)
                        yield router.on_request_headers(
                            req.request_headers,
                            route_name=route_name,
                            jwt_found=jwt_claims.payloads(req),
                        )
                    elif which == "request_body":
                        resp = await router.process_request_body(req.request_body)
                        if router.queued is not None:  # an InferencePool was saturated (extproc/picker)
                            resp = await router.finish_queued(resp)
                        yield resp
                    elif which == "response_headers":
                        resp = router.on_response_headers(req)
                        if (ask := router.price_to_ask()) is not None:  # once per model: before it is priced
                            await self.prices.ensure(*ask)
                        yield resp
                    elif which == "response_body":
                        yield await router.on_response_body_async(req.response_body)
                    else:
                        yield _passthrough(which)
                except Exception:
                    yield router.note_immediate(_failed("router", which, router.op))
                if router.pending is not None:
                    await _settle(router)
                if router.price_wanted is not None:  # a response model seen first: ask now, for the next ones
                    wanted, router.price_wanted = router.price_wanted, None
                    await self.prices.ensure(*wanted)
        finally:
            try:
                router.on_stream_closed()  # a response cut after it started still counts (and is charged)
            except Exception:
                log.exception("router stage failed on stream close")
            if router.pending is not None:
                await _settle(router)


def _knows(authn_id: str) -> Callable[[ExtprocConfig], bool]:
    return lambda config: authn_id in config.authn


async def _settle(router: RouterRequest) -> None:
    """The charge of a finished response (after its last message went back to Envoy)."""
    try:
        await router.settle()
    except Exception:
        log.exception("charging limits failed")


def _failed(stage: str, which: str | None, op: Operation | None) -> ep.ProcessingResponse:
    """A bug in a stage: logged once with its traceback, answered as a 500 in the client's schema.

    Never a dead stream (Envoy would answer 503 "retry shortly" and retry it) and never
    a passthrough: a response the gateway could not translate must not look like success
    (on a response already streaming, Envoy resets it).
    """
    log.exception("%s stage failed on %s", stage, which)
    return errors.immediate(
        status=500,
        message="The gateway failed to process the request.",
        code="gateway_error",
        anthropic=op is not None and op.client_api == "anthropic",
    )


def _passthrough(which: str | None) -> ep.ProcessingResponse:
    if which == "request_headers":
        return ep.ProcessingResponse(request_headers=ep.HeadersResponse())
    if which == "response_headers":
        return ep.ProcessingResponse(response_headers=ep.HeadersResponse())
    if which == "request_body":
        return ep.ProcessingResponse(request_body=ep.BodyResponse())
    if which == "response_body":
        return ep.ProcessingResponse(response_body=ep.BodyResponse())
    if which == "request_trailers":
        return ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
    return ep.ProcessingResponse(response_trailers=ep.TrailersResponse())
