"""A protocol-faithful endpoint picker (EPP) for tests: an Envoy ext_proc server speaking GIE proposal 004.

It behaves like the reference EPP of the Gateway API Inference Extension
(v1.6.0) in FULL_DUPLEX_STREAMED mode: it holds the request headers until the
body ended, picks, then answers the headers with `x-gateway-destination-endpoint`
(header and `envoy.lb` dynamic metadata, the same value) and streams the body
back unchanged. It picks like the conformance suite's test EPP: the
`test-epp-endpoint-selection` header lists IPs or ip:port (in order; an IP
alone means every port of it in the subset); without it, round robin over the
subset hint. `test-epp-status: 429|503` makes it refuse with that status
(an ImmediateResponse), as a picker shedding load does. On the response it
reads `envoy.lb` / `x-gateway-destination-endpoint-served` and echoes it in
`x-conformance-test-served-endpoint` (as the conformance suite's EPP does).

Everything it received is recorded in `calls` (one `EppCall` per stream).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc import wire

SELECTION_HEADER = "test-epp-endpoint-selection"
STATUS_HEADER = "test-epp-status"
SERVED_ECHO_HEADER = "x-conformance-test-served-endpoint"


@dataclass
class EppCall:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    subset: list[str] | None = None  # envoy.lb.subset_hint, as the gateway sent it
    picked: str = ""
    served: str | None = None  # envoy.lb x-gateway-destination-endpoint-served on the response
    response_body: bytes = b""  # the response body as streamed to it
    response_ended: bool = False  # it saw the end of the response (body end or trailers)


def _headers(msg: ep.HttpHeaders) -> dict[str, str]:
    return {h.key: (h.raw_value.decode() if h.raw_value else h.value) for h in msg.headers.headers}


def _metadata(req: ep.ProcessingRequest) -> dict[str, Any]:
    return json_format.MessageToDict(req.metadata_context).get("filterMetadata", {})


class _Servicer(ep_grpc.ExternalProcessorServicer):
    def __init__(self, fake: FakeEpp) -> None:
        self.fake = fake

    def Process(
        self, request_iterator: Iterator[ep.ProcessingRequest], context: Any
    ) -> Iterator[ep.ProcessingResponse]:
        call = EppCall()
        with self.fake.lock:
            self.fake.calls.append(call)
        for req in request_iterator:
            kind = req.WhichOneof("request")
            if kind == "request_headers":
                call.headers = _headers(req.request_headers)
                hint = _metadata(req).get(wire.SUBSET_HINT_NAMESPACE, {})
                subset = hint.get(wire.DESTINATION_ENDPOINT_SUBSET)
                call.subset = list(subset) if isinstance(subset, list) else None
                if req.request_headers.end_of_stream:
                    yield from self._answer(call, with_body=False)
            elif kind == "request_body":
                call.body += req.request_body.body
                if req.request_body.end_of_stream:
                    yield from self._answer(call, with_body=True)
            elif kind == "request_trailers":
                yield ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
            elif kind == "response_headers":
                lb = _metadata(req).get(wire.LB_METADATA_NAMESPACE, {})
                call.served = lb.get(wire.DESTINATION_ENDPOINT_SERVED)
                resp = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
                echo = call.served or "fail: missing destination endpoint served metadata"
                resp.response_headers.response.header_mutation.set_headers.append(
                    base_pb2.HeaderValueOption(
                        header=base_pb2.HeaderValue(key=SERVED_ECHO_HEADER, raw_value=echo.encode())
                    )
                )
                yield resp
            elif kind == "response_body":
                resp = ep.ProcessingResponse(response_body=ep.BodyResponse())
                streamed = resp.response_body.response.body_mutation.streamed_response
                streamed.body = req.response_body.body
                streamed.end_of_stream = req.response_body.end_of_stream
                call.response_body += req.response_body.body
                call.response_ended = call.response_ended or req.response_body.end_of_stream
                yield resp
            elif kind == "response_trailers":
                call.response_ended = True
                yield ep.ProcessingResponse(response_trailers=ep.TrailersResponse())

    def _answer(self, call: EppCall, *, with_body: bool) -> Iterator[ep.ProcessingResponse]:
        status = call.headers.get(STATUS_HEADER)
        if status in ("429", "503"):
            yield ep.ProcessingResponse(
                immediate_response=ep.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=int(status)), body=b"shed by the test EPP"
                )
            )
            return
        call.picked = self.fake.pick(call)
        resp = ep.ProcessingResponse(request_headers=ep.HeadersResponse())
        resp.request_headers.response.header_mutation.set_headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=wire.DESTINATION_ENDPOINT_HEADER, raw_value=call.picked.encode())
            )
        )
        meta = struct_pb2.Struct()
        meta.update({wire.LB_METADATA_NAMESPACE: {wire.DESTINATION_ENDPOINT_HEADER: call.picked}})
        resp.dynamic_metadata.CopyFrom(meta)
        yield resp
        if with_body:
            body = ep.ProcessingResponse(request_body=ep.BodyResponse())
            streamed = body.request_body.response.body_mutation.streamed_response
            streamed.body = call.body
            streamed.end_of_stream = True
            yield body


class FakeEpp:
    """`start()` / `stop()`; `endpoints`: the ip:port of the pool's pods it knows to be up."""

    def __init__(self, *, endpoints: list[str], host: str = "127.0.0.1") -> None:
        self.endpoints = endpoints
        self.host = host
        self.port = 0
        self.calls: list[EppCall] = []
        self.lock = threading.Lock()
        self._rr = itertools.count()
        self._server: grpc.Server | None = None

    def pick(self, call: EppCall) -> str:
        candidates = call.subset if call.subset is not None else self.endpoints
        wanted = [w.strip() for w in call.headers.get(SELECTION_HEADER, "").split(",") if w.strip()]
        if wanted:
            chosen = [c for w in wanted for c in candidates if c == w or c.rsplit(":", 1)[0] == w]
            return ",".join(dict.fromkeys(chosen))
        # Its own choice: round robin over the pods it knows to be up (a real picker scrapes them).
        alive = [c for c in candidates if c in self.endpoints]
        return alive[next(self._rr) % len(alive)] if alive else ""

    def start(self, port: int = 0) -> FakeEpp:
        # One thread per open stream (each lives as long as its request): room for a benchmark's load.
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=512))
        ep_grpc.add_ExternalProcessorServicer_to_server(_Servicer(self), self._server)
        checks = health.HealthServicer()
        for service in ("", "liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
            checks.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checks, self._server)
        self.port = self._server.add_insecure_port(f"{self.host}:{port}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()
