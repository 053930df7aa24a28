"""A real OTLP/gRPC trace receiver for tests: what Envoy's OpenTelemetry tracer exports, kept as spans.

It serves `opentelemetry.proto.collector.trace.v1.TraceService/Export` with the
official opentelemetry-proto messages as vendored by `xds-protos` (the gateway
already depends on it; installing the `opentelemetry-proto` wheel beside it
would overwrite the same files). That copy predates the rename of
`instrumentation_library_spans` to `scope_spans`; both are field 2 with the
same layout, so it decodes exactly what a current collector would.
Spans are flattened into `Span` records: ids in hex, attributes as a dict.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT, ...
    attributes: dict[str, Any]
    service_name: str


def _value(v: common_pb2.AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


@dataclass
class OtlpReceiver:
    """Start with `start()`; `spans` grows as Envoy flushes; `stop()` when done."""

    spans: list[Span] = field(default_factory=list)
    exports: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: grpc.Server | None = None
    port: int = 0

    def start(self) -> OtlpReceiver:
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=ts.ExportTraceServiceRequest.FromString,
                    response_serializer=ts.ExportTraceServiceResponse.SerializeToString,
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _export(self, request: ts.ExportTraceServiceRequest, _: grpc.ServicerContext) -> ts.ExportTraceServiceResponse:
        got: list[Span] = []
        for rs in request.resource_spans:
            service = next(
                (_value(a.value) for a in rs.resource.attributes if a.key == "service.name"),
                "",
            )
            scopes = rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans
            for ss in scopes:
                for s in ss.spans:
                    got.append(
                        Span(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=trace_pb2.Span.SpanKind.Name(s.kind),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            service_name=str(service),
                        )
                    )
        with self._lock:
            self.spans.extend(got)
            self.exports += 1
        return ts.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]
