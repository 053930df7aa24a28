"""Leader election with a coordination.k8s.io/v1 Lease, so two controller replicas never both write.

Every replica watches, translates and serves xDS (so any of them can feed
Envoy); only the leader writes status and provisions data planes — the one
writer of DESIGN convention 6. The algorithm is client-go's: a replica
takes the Lease when it is free or its holder has not renewed it for
`lease_s` as observed on this replica's own clock (no clock-skew assumptions),
renews it every `retry_s`, and steps down when it could not renew within
`renew_deadline_s`. All updates use the Lease's resourceVersion, so of two
replicas racing for it exactly one wins (the other gets 409 Conflict).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from controlplane.kubernetes.client import Kube, KubeError

log = logging.getLogger("llmgw.kubernetes.leader")


def _micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        name: str,
        namespace: str,
        identity: str,
        on_change: Callable[[bool], None],
        lease_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_s: float = 2.0,
    ) -> None:
        self.kube = kube
        self.name, self.namespace, self.identity = name, namespace, identity
        self.on_change = on_change
        self.lease_s, self.renew_deadline_s, self.retry_s = lease_s, renew_deadline_s, retry_s
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, transitions) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if release and self.is_leader:
            self._release()
        self._set(False)

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info(
                "%s %s the leader (Lease %s/%s)",
                self.identity,
                "is now" if leader else "is no longer",
                self.namespace,
                self.name,
            )
            self.on_change(leader)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except (KubeError, OSError) as exc:
                log.warning("leader election: %s", exc)
                ok = False
            now = time.monotonic()
            if ok:
                self._last_renew = now
                self._set(True)
            elif self.is_leader and now - self._last_renew > self.renew_deadline_s:
                self._set(False)
            self._stop.wait(self.retry_s)

    def try_acquire_or_renew(self) -> bool:
        """One round; True when this replica holds the Lease afterwards."""
        now = _micro_time()
        lease = self.kube.get("Lease", self.name, namespace=self.namespace)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(acquire=now, renew=now, transitions=0),
            }
            try:
                self.kube.create(body)
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_s)
        expired = time.monotonic() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        mine = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        acquired = str(spec.get("acquireTime") or "") if mine else ""
        lease["spec"] = self._spec(acquire=acquired or now, renew=now, transitions=transitions)
        try:
            self.kube.replace(lease)  # carries the resourceVersion we read: a racing replica gets 409
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _spec(self, *, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_s),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }

    def _release(self) -> None:
        """Give the Lease up on a clean shutdown so another replica takes over at once."""
        try:
            lease = self.kube.get("Lease", self.name, namespace=self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.replace(lease)
        except (KubeError, OSError) as exc:
            log.info("could not release the Lease: %s", exc)
