"""`llmgw epp`: llmgw's endpoint picker as a GIE endpoint picker (EPP) any conformant gateway can call.

It speaks the endpoint picker protocol (GIE proposal 004, protocol v1.0.0, GIE
v1.6.0) over Envoy's ext_proc in FULL_DUPLEX_STREAMED mode, as the reference
EPP does: it holds the request headers until the body ended, picks, answers the
headers with `x-gateway-destination-endpoint` (header and `envoy.lb` dynamic
metadata, one value: best endpoint first, then fallbacks) and streams the body
and the response back unchanged. It picks among the subset hint
(`envoy.lb.subset_hint`) when the gateway sends one (llmgw and the reference
gateways send every ready endpoint of the pool), else among `--endpoints`.
A request it sheds (saturated pool, low InferenceObjective priority) gets a
429, a pool without endpoints a 503, both as OpenAI-style JSON. It serves the
gRPC health services `liveness`, `readiness` and the ext_proc service name.

The load comes from the same scraper and scheduler as the router stage's picker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc import errors, wire
from extproc.contract import ExtprocConfig, PoolPickConfig
from extproc.headers import header_dict, set_header
from extproc.picker.pools import OBJECTIVE_HEADER, pick_for, pick_queued, record_pick
from extproc.picker.prefix import blocks, prompt_text
from extproc.picker.scraper import LoadBoard

log = logging.getLogger("llmgw.epp")

HEALTH_SERVICES = ("", "liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor")


def _subset(req: ep.ProcessingRequest) -> list[str] | None:
    meta: dict[str, Any] = json_format.MessageToDict(req.metadata_context).get("filterMetadata", {})
    hint = meta.get(wire.SUBSET_HINT_NAMESPACE, {}).get(wire.DESTINATION_ENDPOINT_SUBSET)
    if isinstance(hint, str):
        return [e.strip() for e in hint.split(",") if e.strip()]
    if isinstance(hint, list):
        return [str(e) for e in hint]
    return None


class EndpointPicker(ep_grpc.ExternalProcessorServicer):
    def __init__(self, *, pool: str, base: PoolPickConfig, loads: LoadBoard) -> None:
        self.pool = pool
        self.base = base
        self.loads = loads

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        objective = ""
        subset: list[str] | None = None
        body = b""
        async for req in request_iterator:
            which = req.WhichOneof("request")
            if which == "request_headers":
                objective = header_dict(req.request_headers).get(OBJECTIVE_HEADER, "")
                subset = _subset(req)
                if req.request_headers.end_of_stream:
                    yield await self._pick(objective, subset, b"")
            elif which == "request_body":
                body += req.request_body.body
                if req.request_body.end_of_stream:
                    answer = await self._pick(objective, subset, body)
                    yield answer
                    if answer.WhichOneof("response") == "immediate_response":
                        return
                    yield _streamed_request_body(body)
                    body = b""
            elif which == "request_trailers":
                yield ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
            elif which == "response_headers":
                yield ep.ProcessingResponse(response_headers=ep.HeadersResponse())
            elif which == "response_body":
                resp = ep.ProcessingResponse(response_body=ep.BodyResponse())
                streamed = resp.response_body.response.body_mutation.streamed_response
                streamed.body = req.response_body.body
                streamed.end_of_stream = req.response_body.end_of_stream
                yield resp
            elif which == "response_trailers":
                yield ep.ProcessingResponse(response_trailers=ep.TrailersResponse())

    async def _pick(self, objective: str, subset: list[str] | None, body: bytes) -> ep.ProcessingResponse:
        endpoints = subset if subset is not None else list(self.base.endpoints)
        spec = PoolPickConfig(endpoints=endpoints, engine=self.base.engine, objectives=self.base.objectives)
        config = ExtprocConfig(version="epp", pools={self.pool: spec})
        try:
            parsed = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            parsed = {}
        prefix = blocks(prompt_text(parsed)) if isinstance(parsed, dict) else None
        model = parsed.get("model") if isinstance(parsed, dict) else None
        model = model if isinstance(model, str) else ""
        picked = pick_for(
            self.loads, config, pool=self.pool, objective=objective, prefix=prefix, record=False, model=model
        )
        if picked.decision.shed:  # saturated, a lower priority: wait briefly for room
            picked = await pick_queued(
                self.loads, config, pool=self.pool, objective=objective, prefix=prefix, model=model
            )
        else:
            record_pick(picked)
        decision = picked.decision
        if decision.shed:
            return errors.immediate(
                status=429,
                message=f"The model servers of InferencePool {self.pool} are saturated; "
                "this request's priority is shed. Retry later.",
                code="pool_saturated",
            )
        if not decision.endpoints:
            return errors.immediate(
                status=503, message=f"InferencePool {self.pool} has no ready endpoint.", code="no_ready_endpoint"
            )
        value = ",".join(decision.endpoints)
        resp = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
        resp.request_headers.response.header_mutation.set_headers.append(
            set_header(wire.DESTINATION_ENDPOINT_HEADER, value)
        )
        meta = struct_pb2.Struct()
        meta.update({wire.LB_METADATA_NAMESPACE: {wire.DESTINATION_ENDPOINT_HEADER: value}})
        resp.dynamic_metadata.CopyFrom(meta)
        return resp


def _streamed_request_body(body: bytes) -> ep.ProcessingResponse:
    resp = ep.ProcessingResponse(request_body=ep.BodyResponse())
    streamed = resp.request_body.response.body_mutation.streamed_response
    streamed.body = body
    streamed.end_of_stream = True
    return resp


def parse_objectives(items: list[str]) -> dict[str, int]:
    """`NAME=PRIORITY` flags; raises ValueError naming the bad one."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--objective {item!r}: expected NAME=PRIORITY (an integer)") from None
        if not sep or not name.strip():
            raise ValueError(f"--objective {item!r}: expected NAME=PRIORITY")
    return out


async def serve(*, listen: str, pool: str, base: PoolPickConfig, stop: asyncio.Event | None = None) -> None:
    loads = LoadBoard()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
    ep_grpc.add_ExternalProcessorServicer_to_server(EndpointPicker(pool=pool, base=base, loads=loads), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(listen)
    await server.start()
    for service in HEALTH_SERVICES:
        await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    if base.endpoints:
        loads.want(base.endpoints, engine=base.engine)
    log.info("endpoint picker for %s listening on %s", pool, listen)
    stopping = stop or asyncio.Event()
    if stop is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        for service in HEALTH_SERVICES:
            await checks.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.stop(grace=2)
        with contextlib.suppress(asyncio.CancelledError):
            await loads.close()


def run(*, listen: str, pool: str, endpoints: list[str], engine: str, objectives: list[str]) -> int:
    try:
        base = PoolPickConfig(endpoints=endpoints, engine=engine, objectives=parse_objectives(objectives))
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    asyncio.run(serve(listen=listen, pool=pool, base=base))
    return 0
