"""The informer against the in-process API server: list, watch, resume, 410 relist, bookmarks, errors, filters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controlplane.kubernetes.client import Kube
from controlplane.kubernetes.informer import Informer
from tests.harness import wait_until
from tests.k8s.apiserver import ApiServer


def watching(apiserver: ApiServer, n: int) -> None:
    """Wait until the server has started `n` watches in total (the informer is past its list)."""
    wait_until(lambda: apiserver.watches_started >= n, f"watch number {n}")


def secret(name: str, value: str = "dg==") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"k": value},
    }


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.n += 1


@pytest.fixture
def informer_factory(kube: Kube) -> Iterator[Callable[..., Informer]]:
    started: list[Informer] = []

    def make(kind: str = "Secret", **kw: Any) -> Informer:
        kw.setdefault("on_change", Counter())
        inf = Informer(kube, kind, watch_timeout_s=kw.pop("watch_timeout_s", 30), backoff_max_s=0.2, **kw).start()
        started.append(inf)
        return inf

    yield make
    for inf in started:
        inf.stop()


def names(inf: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in inf.items())


def test_lists_then_follows_changes(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    apiserver.apply(secret("a"))
    changes = Counter()
    inf = informer_factory(on_change=changes)
    assert inf.synced.wait(5)
    assert names(inf) == ["a"]
    apiserver.apply(secret("b"))
    wait_until(lambda: names(inf) == ["a", "b"], "ADDED")
    apiserver.apply(secret("b", "dw=="))
    wait_until(lambda: (inf.get("default", "b") or {}).get("data") == {"k": "dw=="}, "MODIFIED")
    apiserver.remove("Secret", "a")
    wait_until(lambda: names(inf) == ["b"], "DELETED")
    assert changes.n >= 4
    assert inf.stats["lists"] == 1


def test_resumes_a_closed_watch_without_listing_again(
    apiserver: ApiServer, informer_factory: Callable[..., Informer]
) -> None:
    inf = informer_factory()
    watching(apiserver, 1)
    apiserver.close_watches()
    apiserver.apply(secret("late"))
    wait_until(lambda: names(inf) == ["late"], "the event after the reconnect")
    assert inf.stats["lists"] == 1 and inf.stats["watches"] >= 2 and inf.stats["gone"] == 0


def test_gone_during_watch_relists(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    apiserver.apply(secret("a"))
    apiserver.bookmark_interval = 3600  # no bookmark moves the informer's resourceVersion on
    inf = informer_factory()
    watching(apiserver, 1)
    for i in range(3):
        apiserver.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "default"}}
        )
    apiserver.compact()
    apiserver.close_watches()
    watching(apiserver, 2)  # the informer's next watch, from its now compacted resourceVersion
    apiserver.apply(secret("b"))
    wait_until(lambda: names(inf) == ["a", "b"], "relist after 410")
    assert inf.stats["gone"] >= 1 and inf.stats["lists"] >= 2


def test_bookmarks_move_the_resource_version(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    inf = informer_factory()
    watching(apiserver, 1)
    before = int(inf.resource_version)
    apiserver.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "default"}})
    wait_until(lambda: inf.stats["bookmarks"] > 0 and int(inf.resource_version) > before, "a bookmark")
    # ... so after compaction a reconnect resumes without a 410.
    apiserver.compact()
    apiserver.close_watches()
    apiserver.apply(secret("c"))
    wait_until(lambda: names(inf) == ["c"], "the event after the reconnect")
    assert inf.stats["gone"] == 0 and inf.stats["lists"] == 1


def test_list_errors_back_off_and_recover(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    apiserver.apply(secret("a"))
    apiserver.inject("GET", "/secrets", 500)
    apiserver.inject("GET", "/secrets", 503)
    inf = informer_factory()
    assert inf.synced.wait(5)
    assert names(inf) == ["a"] and inf.stats["errors"] == 2


def test_resync_lists_again(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    inf = informer_factory(resync_s=0.5)
    assert inf.synced.wait(5)
    wait_until(lambda: inf.stats["lists"] >= 3, "periodic relists")


def test_keep_filter_put_and_prune(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    wanted = {"a"}
    apiserver.apply(secret("a"))
    apiserver.apply(secret("b"))
    inf = informer_factory(keep=lambda o: o["metadata"]["name"] in wanted)
    assert inf.synced.wait(5)
    assert names(inf) == ["a"]
    apiserver.apply(secret("b", "dw=="))  # not kept: the event is dropped
    apiserver.apply(secret("a", "dw=="))  # events arrive in order: once this one is in, the one above was handled
    wait_until(lambda: (inf.get("default", "a") or {}).get("data") == {"k": "dw=="}, "the later event")
    assert names(inf) == ["a"]
    wanted.add("b")
    b = apiserver.get("Secret", "b")
    assert b is not None
    inf.put(b)
    assert names(inf) == ["a", "b"]
    stale = {**b, "metadata": {**b["metadata"], "resourceVersion": "1"}}
    inf.put(stale)  # older than what is cached: ignored
    assert inf.get("default", "b") == b
    wanted.discard("a")
    inf.prune()
    assert names(inf) == ["b"]


def test_label_selector(apiserver: ApiServer, informer_factory: Callable[..., Informer]) -> None:
    labelled = secret("mine")
    labelled["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "llmgw"}
    apiserver.apply(labelled)
    apiserver.apply(secret("theirs"))
    inf = informer_factory(label_selector="app.kubernetes.io/managed-by=llmgw")
    assert inf.synced.wait(5)
    assert names(inf) == ["mine"]
