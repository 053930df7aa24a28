"""State-of-the-world ADS server (LDS/RDS/CDS/EDS over one stream) on grpc.aio.

Per stream and type it remembers what was sent (version, nonce, names) and
what Envoy acknowledged. A NACK is logged with Envoy's error detail and
recorded; the rejected version is not resent, the next snapshot is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds.names import TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE
from controlplane.xds.snapshot import PUSH_ORDER, Snapshot

log = logging.getLogger("llmgw.ads")


@dataclass
class Nack:
    node: str
    type_url: str
    version: str
    message: str


@dataclass
class _TypeState:
    names: tuple[str, ...] = ()
    sent_version: str | None = None
    sent_names: tuple[str, ...] | None = None
    nonce: str = ""
    acked_version: str = ""
    rejected_version: str | None = None
    sent_by_name: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdsStatus:
    """What the ADS server has seen; read by the supervisor and tests."""

    acks: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, type) -> version
    nacks: list[Nack] = field(default_factory=list)
    connected: int = 0


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._changed = asyncio.Condition()
        self._nonces = itertools.count(1)
        self.status = AdsStatus()

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    async def set_snapshot(self, snapshot: Snapshot) -> None:
        async with self._changed:
            self._snapshot = snapshot
            self._changed.notify_all()

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        states: dict[str, _TypeState] = {}
        outbox: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        node_id = "?"
        wake = asyncio.Event()

        async def read_requests() -> None:
            nonlocal node_id
            async for req in request_iterator:
                if req.node.id:
                    node_id = req.node.id
                self._on_request(node_id, req, states)
                wake.set()

        async def watch_snapshots() -> None:
            while True:
                async with self._changed:
                    await self._changed.wait()
                wake.set()

        self.status.connected += 1
        reader = asyncio.create_task(read_requests(), name="ads-read")
        watcher = asyncio.create_task(watch_snapshots(), name="ads-watch")
        waiter: asyncio.Task[bool] | None = None
        try:
            while not reader.done():
                wake.clear()  # before computing what is due: a wake-up during the yields below is kept
                for resp in self._due(states):
                    await outbox.put(resp)
                while not outbox.empty():
                    yield outbox.get_nowait()
                if wake.is_set():
                    continue
                waiter = asyncio.create_task(wake.wait(), name="ads-wake")
                await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if not reader.cancelled() and reader.exception() is not None:
                log.info("ADS stream from %s ended: %s", node_id, reader.exception())
        finally:
            self.status.connected -= 1
            for task in (reader, watcher, waiter):
                if task is not None:
                    task.cancel()

    def _on_request(self, node: str, req: discovery_pb2.DiscoveryRequest, states: dict[str, _TypeState]) -> None:
        st = states.setdefault(req.type_url, _TypeState())
        st.names = tuple(sorted(req.resource_names))
        if req.response_nonce and req.response_nonce != st.nonce:
            return  # answer to an older response; a newer one is on its way
        if req.error_detail.message:
            st.rejected_version = st.sent_version
            nack = Nack(node, req.type_url, st.sent_version or "", req.error_detail.message)
            self.status.nacks.append(nack)
            log.error(
                "Envoy %s rejected %s version %s: %s",
                node,
                req.type_url.rsplit(".", 1)[-1],
                st.sent_version,
                req.error_detail.message,
            )
            st.sent_names = st.names  # do not resend the rejected version for the same names
            return
        if req.response_nonce:
            st.acked_version = req.version_info
            self.status.acks[(node, req.type_url)] = req.version_info

    def _due(self, states: dict[str, _TypeState]) -> list[discovery_pb2.DiscoveryResponse]:
        """What to send now, make-before-break: a route never names a cluster Envoy lacks.

        New clusters go out first, together with the clusters the current routes
        still use; listeners and routes follow once Envoy has acknowledged those
        clusters and their endpoints; the clusters no route uses any more go last.
        """
        snap = self._snapshot
        if snap is None:
            return []
        out = []
        routes_current = self._routes_current(states, snap)
        clusters_ready = self._clusters_ready(states, snap)
        for type_url in PUSH_ORDER:
            st = states.get(type_url)
            typed = snap.types.get(type_url)
            if st is None or typed is None:
                continue
            by_name, version = typed.by_name, typed.version
            if type_url == TYPE_CLUSTER and not routes_current and st.sent_by_name:
                keep = {n: a for n, a in st.sent_by_name.items() if n not in by_name}
                if keep:  # old clusters stay until the routes that use them are replaced
                    by_name = {**keep, **by_name}
                    version = f"{typed.version}+{len(keep)}"
            if type_url in (TYPE_LISTENER, TYPE_ROUTE) and not clusters_ready:
                continue
            if st.sent_version == version and st.sent_names == st.names:
                continue
            if st.rejected_version == version and st.sent_names == st.names:
                continue
            sent = {n: by_name[n] for n in st.names if n in by_name} if st.names else dict(by_name)
            st.nonce = str(next(self._nonces))
            st.sent_version = version
            st.sent_names = st.names
            st.sent_by_name = sent
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=version, resources=list(sent.values()), type_url=type_url, nonce=st.nonce
                )
            )
        return out

    @staticmethod
    def _acked(st: _TypeState | None, version: str) -> bool:
        return st is None or (st.acked_version == st.sent_version and (st.sent_version or "").split("+")[0] == version)

    def _routes_current(self, states: dict[str, _TypeState], snap: Snapshot) -> bool:
        """Envoy runs this snapshot's listeners and routes (or never asked for any)."""
        for type_url in (TYPE_LISTENER, TYPE_ROUTE):
            st, typed = states.get(type_url), snap.types.get(type_url)
            sent = st is not None and typed is not None and st.sent_version is not None
            if sent and not (st.acked_version == typed.version == st.sent_version):  # type: ignore[union-attr]
                return False
        return True

    def _clusters_ready(self, states: dict[str, _TypeState], snap: Snapshot) -> bool:
        """Every cluster (and endpoint set) of this snapshot is acknowledged by Envoy."""
        cds, clusters = states.get(TYPE_CLUSTER), snap.types.get(TYPE_CLUSTER)
        if cds is not None and clusters is not None and not self._acked(cds, clusters.version):
            return False
        st, typed = states.get(TYPE_ENDPOINT), snap.types.get(TYPE_ENDPOINT)
        if st is None or typed is None or not typed.by_name:
            return True
        if not set(typed.by_name) <= set(st.names):
            return False  # Envoy has not asked for the new clusters' endpoints yet
        return st.acked_version == st.sent_version == typed.version
