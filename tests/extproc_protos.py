"""Real ext_proc protos and an extproc config, to drive the stages without Envoy or sockets.

Used by the unit tests of the router and attempt stages, the server and the input validation.
"""

from __future__ import annotations

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2, text_format

from extproc.contract import AuthConfig, ExtprocConfig, ProviderConfig
from extproc.wire import MODEL_HEADER

GATEWAY = "default/llmgw"
PROVIDER_ID = "default/b/openai"


def http_headers(headers: dict[str, str], *, end_of_stream: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
        ),
        end_of_stream=end_of_stream,
    )


def body_msg(body: bytes | dict, *, end_of_stream: bool = True) -> ep.HttpBody:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ep.HttpBody(body=raw, end_of_stream=end_of_stream)


def host_metadata_text(provider_id: str) -> str:
    """`xds.upstream_host_metadata` as Envoy sends it: the Metadata message in text format."""
    meta = base_pb2.Metadata()
    meta.filter_metadata["envoy.transport_socket_match"].update({"provider": provider_id})
    meta.filter_metadata["llmgw"].update({"provider": provider_id})
    return text_format.MessageToString(meta, as_one_line=True)


def attributes(values: dict[str, str]) -> dict[str, struct_pb2.Struct]:
    struct = struct_pb2.Struct()
    struct.update(values)
    return {"envoy.filters.http.ext_proc": struct}


def header_sets(mutation: ep.HeaderMutation) -> dict[str, str]:
    return {
        o.header.key: (o.header.raw_value.decode() if o.header.raw_value else o.header.value)
        for o in mutation.set_headers
    }


def make_config(**provider_kw: object) -> ExtprocConfig:
    kw: dict[str, object] = {
        "id": PROVIDER_ID,
        "backend": "default/b",
        "kind": "openai",
        "host": "api.openai.com",
        "auth": AuthConfig(header="authorization", prefix="Bearer ", value="sk-provider", source="test"),
    }
    kw.update(provider_kw)
    provider = ProviderConfig(**kw)  # type: ignore[arg-type]
    return ExtprocConfig(
        version="v1",
        providers={PROVIDER_ID: provider},
        models={GATEWAY: ["gpt-4o", "gpt-4o-mini"], "other/gw": ["secret-model"]},
    )


def immediate_json(resp: ep.ProcessingResponse) -> tuple[int, dict]:
    assert resp.WhichOneof("response") == "immediate_response", resp
    ir = resp.immediate_response
    assert header_sets(ir.headers)["content-type"] == "application/json"
    return ir.status.code, orjson.loads(ir.body)


def llmgw_meta(resp: ep.ProcessingResponse) -> dict:
    struct = resp.dynamic_metadata
    assert "llmgw" in struct.fields, resp
    return {k: _plain(v) for k, v in struct.fields["llmgw"].struct_value.fields.items()}


def _plain(v: struct_pb2.Value) -> object:
    kind = v.WhichOneof("kind")
    return getattr(v, kind)


CLIENT_HEADERS = {
    ":method": "POST",
    ":path": "/v1/chat/completions",
    ":authority": "gw",
    "authorization": "Bearer client-key",
    "api-key": "client",
    "x-api-key": "client",
    "x-goog-api-key": "client",
    MODEL_HEADER: "gpt-4o",
}
