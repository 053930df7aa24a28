"""Leader election over a Lease in the in-process API server: one writer, hand-over on release and on expiry."""

from __future__ import annotations

import threading

from controlplane.kubernetes.client import Kube
from controlplane.kubernetes.leader import LeaderElector
from tests.harness import wait_until
from tests.k8s.apiserver import ApiServer


def elector(kube: Kube, identity: str, log: list[tuple[str, bool]]) -> LeaderElector:
    lock = threading.Lock()

    def changed(leader: bool) -> None:
        with lock:
            log.append((identity, leader))

    return LeaderElector(
        kube,
        name="llmgw-controller",
        namespace="llmgw-system",
        identity=identity,
        on_change=changed,
        lease_s=1.0,
        renew_deadline_s=0.8,
        retry_s=0.1,
    )


def leaders(*electors: LeaderElector) -> list[str]:
    return [e.identity for e in electors if e.is_leader]


def test_exactly_one_leader_and_release_hands_over(apiserver: ApiServer, kube: Kube) -> None:
    log: list[tuple[str, bool]] = []
    a, b = elector(kube, "a", log).start(), elector(kube, "b", log).start()
    try:
        wait_until(lambda: len(leaders(a, b)) == 1, "a leader")
        first = leaders(a, b)[0]
        lease = apiserver.get("Lease", "llmgw-controller", "llmgw-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == first
        for _ in range(5):  # stays stable while both run
            assert leaders(a, b) == [first]
            threading.Event().wait(0.2)
        winner, other = (a, b) if first == "a" else (b, a)
        winner.stop(release=True)
        wait_until(lambda: other.is_leader, "the other replica to take over")
        lease = apiserver.get("Lease", "llmgw-controller", "llmgw-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == other.identity
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        a.stop()
        b.stop()
    assert (first, True) in log and (first, False) in log


def test_a_crashed_leader_is_replaced_after_the_lease_expires(apiserver: ApiServer, kube: Kube) -> None:
    log: list[tuple[str, bool]] = []
    a = elector(kube, "a", log).start()
    wait_until(lambda: a.is_leader, "a to lead")
    a.stop(release=False)  # as if the pod died: the Lease still names it
    b = elector(kube, "b", log).start()
    try:
        assert not b.is_leader
        wait_until(lambda: b.is_leader, "b to take the expired Lease", timeout=5)
    finally:
        b.stop()


def test_a_leader_that_cannot_renew_steps_down(apiserver: ApiServer, kube: Kube) -> None:
    log: list[tuple[str, bool]] = []
    a = elector(kube, "a", log).start()
    try:
        wait_until(lambda: a.is_leader, "a to lead")
        for _ in range(30):
            apiserver.inject("GET", "/leases/", 500)
        wait_until(lambda: not a.is_leader, "a to step down")
    finally:
        a.stop()


def test_racing_writers_one_wins_by_resource_version(apiserver: ApiServer, kube: Kube) -> None:
    """Two replicas read the same free Lease; both try to take it; the second write is a 409."""
    a, b = elector(kube, "a", []), elector(kube, "b", [])
    assert a.try_acquire_or_renew()  # creates the Lease
    lease = apiserver.get("Lease", "llmgw-controller", "llmgw-system")
    assert lease is not None
    lease["spec"]["holderIdentity"] = ""  # released
    apiserver.apply(lease)
    apiserver.inject("PUT", "/leases/", 409, "Conflict")  # b's write loses the race
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()
