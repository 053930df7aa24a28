"""Per-Gateway xDS and extproc config: one ADS endpoint and one config channel for every data plane.

Each Gateway gets its own snapshot. Rather than teaching `AdsServer` about
nodes, this wraps it: one `AdsServer` per Gateway, and a stream is handed to
the one named by the first request's `node.cluster` (the provisioned
bootstrap sets it to "<ns>/<name>"). The extproc config channel is split the
same way: a worker names its Gateway in the name it subscribes with
("extproc-0@<ns>/<name>", which the data plane sidecar passes as --name), and
receives only the providers — and credentials — of that Gateway's routes.
An unknown Gateway gets nothing until the controller has a config for it.

With mutual TLS (`xds_tls.py`, `verify_peer`), the Gateway a stream asks for must be
the one its peer's client certificate names; any other request is refused
(PERMISSION_DENIED) before a byte of config is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.configchannel import PRICE_HANDLER, SERVICE, ConfigChannel
from controlplane.kubernetes.xds_tls import peer_gateway
from controlplane.xds.ads import AdsServer, Nack
from controlplane.xds.snapshot import Snapshot
from extproc.contract import ExtprocConfig


def gateway_of_worker(name: str) -> str:
    """The Gateway a worker subscribes for: "extproc-0@ns/name" -> "ns/name" ("" if none)."""
    return name.rpartition("@")[2] if "@" in name else ""


async def _authorize(context: grpc.aio.ServicerContext, gateway: str, *, verify_peer: bool) -> None:
    if not verify_peer:
        return
    peer = peer_gateway(context)
    if peer is None or peer != gateway:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"this client certificate is for Gateway {peer or '(none)'}, not {gateway or '(none)'}",
        )


class GatewayAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self) -> None:
        self.servers: dict[str, AdsServer] = {}
        self.verify_peer = False  # set when the port requires client certificates (xds_tls.py)

    def server(self, gateway: str) -> AdsServer:
        if gateway not in self.servers:
            self.servers[gateway] = AdsServer()
        return self.servers[gateway]

    def snapshot(self, gateway: str) -> Snapshot | None:
        server = self.servers.get(gateway)
        return server.snapshot if server else None

    async def set_snapshot(self, gateway: str, snapshot: Snapshot) -> None:
        await self.server(gateway).set_snapshot(snapshot)

    def drop(self, gateway: str) -> None:
        """Forget a Gateway that is gone; its open streams end with its pods."""
        self.servers.pop(gateway, None)

    def acked(self, gateway: str) -> dict[tuple[str, str], str]:
        server = self.servers.get(gateway)
        return dict(server.status.acks) if server else {}

    def nacks(self) -> list[tuple[str, Nack]]:
        return [(gw, n) for gw, server in self.servers.items() for n in server.status.nacks]

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield first
            async for req in request_iterator:
                yield req

        await _authorize(context, first.node.cluster, verify_peer=self.verify_peer)
        async for resp in self.server(first.node.cluster).StreamAggregatedResources(requests(), context):
            yield resp


class GatewayChannels:
    """One `ConfigChannel` per Gateway behind the single config-channel method."""

    def __init__(self) -> None:
        self.channels: dict[str, ConfigChannel] = {}
        self.verify_peer = False  # set when the port requires client certificates (xds_tls.py)

    def channel(self, gateway: str) -> ConfigChannel:
        if gateway not in self.channels:
            self.channels[gateway] = ConfigChannel()
        return self.channels[gateway]

    async def publish(self, gateway: str, config: ExtprocConfig) -> None:
        await self.channel(gateway).publish(config)

    def drop(self, gateway: str) -> None:
        """Forget a Gateway that is gone (and the credentials its config held)."""
        self.channels.pop(gateway, None)

    def watchers(self, gateway: str) -> int:
        channel = self.channels.get(gateway)
        return channel.watchers if channel else 0

    async def _watch(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        gateway = gateway_of_worker(request.decode("utf-8", "replace"))
        await _authorize(context, gateway, verify_peer=self.verify_peer)
        async for config in self.channel(gateway)._watch(request, context):
            yield config

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self._watch, request_deserializer=None, response_serializer=None
                ),
                "Price": PRICE_HANDLER,
            },
        )
