"""A consistent set of Envoy resources with one version per resource type.

The version of a type is a hash of its serialized resources, so a change to
routes does not resend clusters, and an unchanged config is not resent at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.xds import names

# Order in which a new snapshot is pushed: secrets (SDS credentials of plain backends) before
# the clusters that name them, clusters before their endpoints, listeners before their routes
# (Envoy's warming order).
PUSH_ORDER = (names.TYPE_SECRET, names.TYPE_CLUSTER, names.TYPE_ENDPOINT, names.TYPE_LISTENER, names.TYPE_ROUTE)


@dataclass(frozen=True)
class TypedResources:
    version: str
    by_name: dict[str, any_pb2.Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    serial: int
    types: dict[str, TypedResources] = field(default_factory=dict)

    @classmethod
    def build(cls, *, serial: int, protos: dict[str, list[Message]]) -> Snapshot:
        types: dict[str, TypedResources] = {}
        for type_url, items in protos.items():
            packed: dict[str, any_pb2.Any] = {}
            digest = hashlib.sha256()
            for msg in sorted(items, key=_resource_name):
                packed_any = any_pb2.Any()
                packed_any.Pack(msg)
                packed[_resource_name(msg)] = packed_any
                digest.update(packed_any.value)
            types[type_url] = TypedResources(version=digest.hexdigest()[:12], by_name=packed)
        return cls(serial=serial, types=types)


def _resource_name(msg: Message) -> str:
    name = getattr(msg, "name", "") or getattr(msg, "cluster_name", "")
    return str(name)
