"""Small helpers over ext_proc header messages (upb protos, so keep them cheap)."""

from __future__ import annotations

import re

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_dict(headers: ep.HttpHeaders) -> dict[str, str]:
    """Lower-case name -> value (Envoy sends values in raw_value since 1.27)."""
    out: dict[str, str] = {}
    for h in headers.headers.headers:
        out[h.key] = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return out


def set_header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()), append_action=OVERWRITE
    )


def attribute(request: ep.ProcessingRequest, name: str) -> object:
    """An attribute from `request_attributes`/`response_attributes`, as a Python value or None.

    Envoy puts them in one Struct per filter name; we look through all of them.
    """
    for struct in request.attributes.values():
        if name in struct.fields:
            return _value(struct.fields[name])
    return None


def _value(v: struct_pb2.Value) -> object:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _value(x) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [_value(x) for x in v.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(v, kind)


# Fields print in key order; the ones before "provider" (e.g. "pausable") hold scalars.
_PROVIDER_IN_TEXT = re.compile(
    r'key: "llmgw" value \{ (?:fields \{ key: "[^"]*" value \{ [^{}]* \} \} )*'
    r'fields \{ key: "provider" value \{ string_value: "([^"]*)"'
)


def provider_from_host_metadata(meta: object) -> str | None:
    """`xds.upstream_host_metadata` -> our provider id (filter_metadata.llmgw.provider).

    Envoy 1.40 sends this attribute as the Metadata message in protobuf text
    format; a regular expression reads it far cheaper than a text-format parse.
    """
    if isinstance(meta, str):
        m = _PROVIDER_IN_TEXT.search(meta)
        return m.group(1) if m else None
    if isinstance(meta, dict):
        fm = meta.get("filter_metadata") or meta.get("filterMetadata") or {}
        ours = fm.get("llmgw") if isinstance(fm, dict) else None
        pid = ours.get("provider") if isinstance(ours, dict) else None
        return pid if isinstance(pid, str) else None
    return None


def host_metadata_has(meta: object, key: str) -> bool:
    """Whether `xds.upstream_host_metadata` sets our (llmgw namespace) boolean `key` to true."""
    if isinstance(meta, str):
        return f'key: "{key}" value {{ bool_value: true }}' in meta
    if isinstance(meta, dict):
        fm = meta.get("filter_metadata") or meta.get("filterMetadata") or {}
        ours = fm.get("llmgw") if isinstance(fm, dict) else None
        return isinstance(ours, dict) and ours.get(key) is True
    return False


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def header_value_ok(value: str) -> bool:
    """Whether `value` (an identity field, from a manifest or a token's claims) may be a header value."""
    return len(value) <= 1024 and not _UNSAFE.search(value)
