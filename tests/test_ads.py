"""ADS server and extproc config channel over a real grpc.aio server on a Unix socket.

The client plays Envoy: state-of-the-world DiscoveryRequests on one ADS stream,
ACKs (version + nonce), NACKs (error_detail), stale nonces. Instead of waiting
for "nothing happens", most checks send a probe request and assert that its
answer is the next response on the stream (the server answers in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from controlplane.compile import compile_paths
from controlplane.configchannel import ConfigChannel
from controlplane.xds import names
from controlplane.xds.ads import AdsServer, Nack
from controlplane.xds.snapshot import Snapshot
from extproc.contract import ExtprocConfig, ProviderConfig
from extproc.wire import CONFIG_WATCH_METHOD as METHOD

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "gateway.yaml"
CDS, EDS, LDS, RDS = names.TYPE_CLUSTER, names.TYPE_ENDPOINT, names.TYPE_LISTENER, names.TYPE_ROUTE
NODE = "envoy-test"
TIMEOUT = 2.0


def quickstart_protos() -> dict[str, list[Message]]:
    compiled = compile_paths([QUICKSTART])
    assert compiled.ok, compiled.problems
    assert compiled.protos is not None
    protos = {t: list(items) for t, items in compiled.protos.items()}
    # A second route configuration, so that a subscription by name can be told from "everything".
    protos[RDS].append(route_pb2.RouteConfiguration(name="extra-routes"))
    return protos


def with_extra_cluster(protos: dict[str, list[Message]], name: str) -> dict[str, list[Message]]:
    out = {t: list(items) for t, items in protos.items()}
    out[CDS].append(cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC))
    return out


def resource_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for any_msg in resp.resources:
        if any_msg.type_url == RDS:
            msg: Message = route_pb2.RouteConfiguration()
        elif any_msg.type_url == CDS:
            msg = cluster_pb2.Cluster()
        else:
            raise AssertionError(any_msg.type_url)
        assert any_msg.Unpack(msg)
        out.append(msg.name)  # type: ignore[attr-defined]
    return sorted(out)


@dataclass
class Env:
    ads: AdsServer
    config: ConfigChannel
    target: str


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Env]:
    tmp = tempfile.mkdtemp(prefix="ads", dir="/tmp")
    target = f"unix:{tmp}/s"
    server = grpc.aio.server()
    try:
        ads = AdsServer()
        config = ConfigChannel()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
        server.add_generic_rpc_handlers([config.handler()])
        server.add_insecure_port(target)
        await server.start()
        yield Env(ads=ads, config=config, target=target)
    finally:
        await server.stop(0)
        shutil.rmtree(tmp, ignore_errors=True)


class FakeEnvoy:
    """One ADS stream; responses land in a queue so that waiting never cancels a gRPC read."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel).StreamAggregatedResources()
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self.last: dict[str, discovery_pb2.DiscoveryResponse] = {}
        self._reader = asyncio.create_task(self._read(), name="fake-envoy-read")

    async def _read(self) -> None:
        async for resp in self.call:
            await self.responses.put(resp)

    async def request(
        self,
        type_url: str,
        *,
        names: list[str] | None = None,
        version: str = "",
        nonce: str = "",
        error: str = "",
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=names or [],
            version_info=version,
            response_nonce=nonce,
        )
        req.node.id = NODE
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, *, names: list[str] | None = None) -> None:
        await self.request(resp.type_url, names=names, version=resp.version_info, nonce=resp.nonce)

    async def nack(self, resp: discovery_pb2.DiscoveryResponse, *, message: str, acked_version: str = "") -> None:
        await self.request(resp.type_url, version=acked_version, nonce=resp.nonce, error=message)

    async def next(self, type_url: str | None = None) -> discovery_pb2.DiscoveryResponse:
        resp = await asyncio.wait_for(self.responses.get(), TIMEOUT)
        if type_url is not None:
            assert resp.type_url == type_url, f"expected {type_url}, got {resp.type_url} {resp.version_info}"
        self.last[resp.type_url] = resp
        return resp

    async def assert_quiet(self) -> None:
        """Nothing more arrives (bounded wait; the probes above carry the real ordering checks)."""
        with pytest.raises(asyncio.TimeoutError):
            resp = await asyncio.wait_for(self.responses.get(), 0.2)
            raise AssertionError(f"unexpected response {resp.type_url} version {resp.version_info}")

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._reader
        await self.channel.close()


@contextlib.asynccontextmanager
async def envoy(target: str) -> AsyncIterator[FakeEnvoy]:
    client = FakeEnvoy(target)
    try:
        yield client
    finally:
        await client.close()


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 10))


# --- ADS -----------------------------------------------------------------------------------------


def test_cds_ack_lds_rds_by_name() -> None:
    async def main() -> None:
        protos = quickstart_protos()
        snap = Snapshot.build(serial=1, protos=protos)
        async with serving() as env, envoy(env.target) as client:
            await env.ads.set_snapshot(snap)
            await client.request(CDS)
            cds = await client.next(CDS)
            assert cds.version_info == snap.types[CDS].version
            assert cds.nonce
            # the backend's cluster and its twin for direct routes (no attempt stage)
            assert resource_names(cds) == ["aibackend-direct/default/fake-openai", "aibackend/default/fake-openai"]
            assert env.ads.status.connected == 1

            await client.ack(cds)
            # Probe: the next response must be the listeners, so no CDS was resent after the ACK.
            await client.request(LDS)
            lds = await client.next(LDS)
            assert lds.version_info == snap.types[LDS].version
            assert lds.nonce != cds.nonce
            assert len(lds.resources) == 1
            assert env.ads.status.acks[(NODE, CDS)] == cds.version_info

            await client.ack(lds)
            await client.request(RDS, names=["default/llmgw/8080"])
            rds = await client.next(RDS)
            assert resource_names(rds) == ["default/llmgw/8080"]
            assert env.ads.status.acks[(NODE, LDS)] == lds.version_info

            # Envoy changes its subscription: ACK carrying the new names.
            await client.ack(rds, names=["extra-routes"])
            rds2 = await client.next(RDS)
            assert resource_names(rds2) == ["extra-routes"]
            await client.ack(rds2, names=["extra-routes"])

            # A wildcard RDS request gets all route configurations.
            await client.request(RDS, version=rds2.version_info, nonce=rds2.nonce)
            rds3 = await client.next(RDS)
            assert resource_names(rds3) == ["default/llmgw/8080", "extra-routes"]
            await client.ack(rds3)
            await client.assert_quiet()
            assert env.ads.status.acks[(NODE, RDS)] == rds3.version_info
            assert env.ads.status.nacks == []

    run(main)


def test_request_before_snapshot_is_answered_when_it_arrives() -> None:
    async def main() -> None:
        async with serving() as env, envoy(env.target) as client:
            await client.request(CDS)
            await client.request(LDS)
            await client.assert_quiet()
            snap = Snapshot.build(serial=1, protos=quickstart_protos())
            await env.ads.set_snapshot(snap)
            # Clusters first; listeners only once Envoy has acknowledged the clusters.
            cds = await client.next(CDS)
            assert cds.version_info == snap.types[CDS].version
            await client.assert_quiet()
            await client.ack(cds)
            assert (await client.next(LDS)).version_info == snap.types[LDS].version

    run(main)


def test_nack_recorded_and_rejected_version_not_resent() -> None:
    async def main() -> None:
        protos = quickstart_protos()
        snap1 = Snapshot.build(serial=1, protos=protos)
        async with serving() as env, envoy(env.target) as client:
            await env.ads.set_snapshot(snap1)
            await client.request(CDS)
            cds1 = await client.next(CDS)
            await client.nack(cds1, message="cluster aibackend/default/fake-openai: bad lb policy")

            await client.request(EDS)  # probe: no CDS resend before this answer
            await client.next(EDS)
            assert env.ads.status.nacks == [
                Nack(NODE, CDS, cds1.version_info, "cluster aibackend/default/fake-openai: bad lb policy")
            ]
            assert (NODE, CDS) not in env.ads.status.acks

            # The same content again (new serial, same versions) is not resent either.
            await env.ads.set_snapshot(Snapshot.build(serial=2, protos=protos))
            await client.assert_quiet()

            # New content is sent.
            snap3 = Snapshot.build(serial=3, protos=with_extra_cluster(protos, "fixed"))
            assert snap3.types[CDS].version != snap1.types[CDS].version
            assert snap3.types[LDS].version == snap1.types[LDS].version
            await env.ads.set_snapshot(snap3)
            cds3 = await client.next(CDS)
            assert cds3.version_info == snap3.types[CDS].version
            assert resource_names(cds3) == [
                "aibackend-direct/default/fake-openai",
                "aibackend/default/fake-openai",
                "fixed",
            ]
            await client.ack(cds3)
            await client.assert_quiet()  # LDS did not change: not resent
            assert env.ads.status.acks[(NODE, CDS)] == cds3.version_info
            assert len(env.ads.status.nacks) == 1

    run(main)


def test_stale_nonce_is_ignored() -> None:
    async def main() -> None:
        protos = quickstart_protos()
        snap1 = Snapshot.build(serial=1, protos=protos)
        snap2 = Snapshot.build(serial=2, protos=with_extra_cluster(protos, "second"))
        async with serving() as env, envoy(env.target) as client:
            await env.ads.set_snapshot(snap1)
            await client.request(CDS)
            cds1 = await client.next(CDS)
            await env.ads.set_snapshot(snap2)
            cds2 = await client.next(CDS)
            assert cds2.version_info == snap2.types[CDS].version

            # Envoy answers the first response late: a NACK and an ACK with the stale nonce.
            await client.nack(cds1, message="stale complaint")
            await client.ack(cds1)
            await client.request(EDS, names=["aibackend-direct/default/fake-openai"])  # probe
            await client.next(EDS)
            assert env.ads.status.nacks == []
            assert (NODE, CDS) not in env.ads.status.acks

            await client.ack(cds2)
            await client.request(EDS, names=["aibackend/default/fake-openai"])  # probe
            eds = await client.next(EDS)
            assert len(eds.resources) == 1
            assert env.ads.status.acks[(NODE, CDS)] == cds2.version_info

    run(main)


def test_unchanged_snapshot_not_resent() -> None:
    async def main() -> None:
        protos = quickstart_protos()
        async with serving() as env, envoy(env.target) as client:
            await env.ads.set_snapshot(Snapshot.build(serial=1, protos=protos))
            await client.request(CDS)
            cds = await client.next(CDS)
            await client.ack(cds)
            await env.ads.set_snapshot(Snapshot.build(serial=2, protos=quickstart_protos()))
            await client.request(EDS)  # probe: a CDS resend would come first
            await client.next(EDS)
            await client.assert_quiet()

    run(main)


def test_two_streams_are_independent() -> None:
    async def main() -> None:
        snap = Snapshot.build(serial=1, protos=quickstart_protos())
        async with serving() as env, envoy(env.target) as a, envoy(env.target) as b:
            await env.ads.set_snapshot(snap)
            await a.request(CDS)
            cds_a = await a.next(CDS)
            await a.ack(cds_a)
            await b.request(CDS)
            cds_b = await b.next(CDS)
            assert cds_b.version_info == cds_a.version_info
            assert cds_b.nonce != cds_a.nonce
            assert env.ads.status.connected == 2

    run(main)


# The lost wake-up: the stream generator clears `wake` *after* it yielded, so a request
# (or snapshot change) handled while the generator was suspended in `yield` is forgotten
# until something else wakes the stream. Driven directly, without gRPC, to make it deterministic.


async def _drive_directly(*, poke_with_snapshot: bool) -> None:
    ads = AdsServer()
    protos = quickstart_protos()
    await ads.set_snapshot(Snapshot.build(serial=1, protos=protos))
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    async def request_iterator() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (req := await requests.get()) is not None:
            yield req

    stream = ads.StreamAggregatedResources(request_iterator(), None)  # type: ignore[arg-type]
    try:
        await requests.put(discovery_pb2.DiscoveryRequest(type_url=CDS))
        first = await asyncio.wait_for(stream.__anext__(), TIMEOUT)
        assert first.type_url == CDS
        # The generator is now suspended in `yield`, as it is while gRPC writes the response.
        if poke_with_snapshot:
            await ads.set_snapshot(Snapshot.build(serial=2, protos=with_extra_cluster(protos, "x")))
            expected = CDS
        else:
            await requests.put(discovery_pb2.DiscoveryRequest(type_url=EDS))
            expected = EDS
        for _ in range(5):
            await asyncio.sleep(0)  # the reader / watcher tasks run and set `wake`
        second = await asyncio.wait_for(stream.__anext__(), 1.0)  # immediate once fixed
        assert second.type_url == expected
    finally:
        await requests.put(None)
        await stream.aclose()


def test_request_arriving_while_response_is_written_is_answered() -> None:
    asyncio.run(_drive_directly(poke_with_snapshot=False))


def test_snapshot_arriving_while_response_is_written_is_pushed() -> None:
    asyncio.run(_drive_directly(poke_with_snapshot=True))


# --- config channel ------------------------------------------------------------------------------


def _config(version: str) -> ExtprocConfig:
    provider = ProviderConfig(id="ns/b/p", backend="ns/b", kind="openai", host="h")
    return ExtprocConfig(version=version, providers={"ns/b/p": provider}, models={"ns/gw": ["m"]})


def test_config_channel_current_then_next() -> None:
    async def main() -> None:
        async with serving() as env:
            await env.config.publish(_config("v1"))
            async with grpc.aio.insecure_channel(env.target) as channel:
                call = channel.unary_stream(METHOD, request_serializer=None, response_deserializer=None)(b"worker-1")
                try:
                    first = await asyncio.wait_for(call.read(), TIMEOUT)
                    assert ExtprocConfig.from_json(first) == _config("v1")
                    assert env.config.watchers == 1
                    # Publishing the same config again sends nothing; a new one is sent.
                    await env.config.publish(_config("v1"))
                    await env.config.publish(_config("v2"))
                    second = await asyncio.wait_for(call.read(), TIMEOUT)
                    assert ExtprocConfig.from_json(second) == _config("v2")
                finally:
                    call.cancel()

    run(main)


def test_config_channel_waits_for_first_publish() -> None:
    async def main() -> None:
        async with serving() as env, grpc.aio.insecure_channel(env.target) as channel:
            call = channel.unary_stream(METHOD, request_serializer=None, response_deserializer=None)(b"worker-2")
            try:
                reader = asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({reader}, timeout=0.2)
                assert not done
                await env.config.publish(_config("v7"))
                assert ExtprocConfig.from_json(await asyncio.wait_for(reader, TIMEOUT)).version == "v7"
            finally:
                call.cancel()

    run(main)


def test_make_before_break_keeps_old_clusters_until_routes_move() -> None:
    """A reload that moves a route to another cluster: no route ever names a cluster Envoy lacks."""

    def routed_to(cluster: str) -> dict[str, list[Message]]:
        protos = with_extra_cluster(quickstart_protos(), cluster)
        routes = [route_pb2.RouteConfiguration() for _ in protos[RDS]]
        for copy, original in zip(routes, protos[RDS], strict=True):
            copy.CopyFrom(original)
        for vh in routes[0].virtual_hosts:
            for r in vh.routes:
                r.route.cluster = cluster
        protos[RDS] = routes
        return protos

    async def main() -> None:
        snap1, snap2 = (
            Snapshot.build(serial=1, protos=routed_to("old")),
            Snapshot.build(serial=2, protos=routed_to("new")),
        )
        names = sorted(snap1.types[RDS].by_name)
        async with serving() as env, envoy(env.target) as client:
            await env.ads.set_snapshot(snap1)
            await client.request(CDS)
            await client.ack(await client.next(CDS))
            await client.request(LDS)
            await client.ack(await client.next(LDS))
            await client.request(RDS, names=names)
            await client.ack(await client.next(RDS), names=names)

            await env.ads.set_snapshot(snap2)
            union = await client.next(CDS)
            assert {"old", "new"} <= set(resource_names(union))
            await client.ack(union)
            rds = await client.next(RDS)  # routes move only once both clusters are acknowledged
            assert rds.version_info == snap2.types[RDS].version
            await client.ack(rds, names=names)
            final = await client.next(CDS)  # the cluster no route uses any more goes last
            assert final.version_info == snap2.types[CDS].version
            assert "old" not in resource_names(final) and "new" in resource_names(final)

    run(main)
