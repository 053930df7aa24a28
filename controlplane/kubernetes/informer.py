"""List + watch one kind into a local cache, in a thread: the controller's view of the cluster.

The reflector loop Kubernetes controllers use: list (cache := items, remember
the list's resourceVersion), then watch from that resourceVersion, applying
ADDED/MODIFIED/DELETED and moving the resourceVersion forward on every event
and on BOOKMARKs (so a reconnect resumes from a recent point even when nothing
of this kind changed). When the server ends a watch, watch again from the last
resourceVersion; on `410 Gone` (history compacted) list again; every
`resync_s` list again anyway, so a missed event cannot stay missed. Errors
back off and retry; the cache keeps its last content meanwhile.

`keep` filters what is cached (the controller keeps only referenced Secrets);
`put` inserts an object fetched on demand (a Secret that became referenced).
`on_change` is called after each change, from this thread. An `optional` kind
(a CRD another project installs, such as agentgateway's AgentgatewayPolicy or
the Inference Extension's InferencePool)
that the API server does not know (404) counts as synced and empty, and is
listed again after `optional_retry_s` (or `resync_s`, if sooner).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from controlplane.kubernetes.client import Gone, Kube, KubeError, WatchHandle

log = logging.getLogger("llmgw.kubernetes.informer")
Obj = dict[str, Any]


def key_of(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _newer_or_equal(incoming: Obj, cached: Obj | None) -> bool:
    """Whether `incoming` is not older than `cached` (resourceVersions compared as integers when they are)."""
    if cached is None:
        return True
    a = str((incoming.get("metadata") or {}).get("resourceVersion", ""))
    b = str((cached.get("metadata") or {}).get("resourceVersion", ""))
    return not (a.isdigit() and b.isdigit()) or int(a) >= int(b)


class Informer:
    def __init__(
        self,
        kube: Kube,
        kind: str,
        *,
        on_change: Callable[[], None],
        namespace: str | None = None,
        label_selector: str = "",
        keep: Callable[[Obj], bool] | None = None,
        resync_s: float = 600.0,
        watch_timeout_s: int = 300,
        backoff_max_s: float = 10.0,
        optional: bool = False,
        optional_retry_s: float = 30.0,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.keep = keep
        self.on_change = on_change
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.backoff_max_s = backoff_max_s
        # A kind whose CRD may not be installed (agentgateway's, the Inference Extension's): a 404 list
        # is an empty, synced cache, and the type is looked for again every `optional_retry_s`.
        self.optional = optional
        self.optional_retry_s = optional_retry_s
        self.synced = threading.Event()
        self.resource_version = ""
        self.stats = {"lists": 0, "watches": 0, "gone": 0, "bookmarks": 0, "errors": 0, "events": 0}
        self.last_error = ""
        self._items: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handle: WatchHandle | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ cache

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((namespace, name))

    def put(self, obj: Obj) -> None:
        """Insert an object fetched outside the watch (if kept and not older than what is cached)."""
        if self.keep is not None and not self.keep(obj):
            return
        with self._lock:
            key = key_of(obj)
            if not _newer_or_equal(obj, self._items.get(key)) or self._items.get(key) == obj:
                return
            self._items[key] = obj
        self.on_change()

    def prune(self) -> None:
        """Drop cached objects `keep` no longer wants."""
        if self.keep is None:
            return
        with self._lock:
            drop = [k for k, o in self._items.items() if not self.keep(o)]
            for k in drop:
                del self._items[k]
        if drop:
            self.on_change()

    def _replace(self, items: list[Obj]) -> None:
        kept = {key_of(o): o for o in items if self.keep is None or self.keep(o)}
        with self._lock:
            changed = kept != self._items
            self._items = kept
        if changed or not self.synced.is_set():
            self.synced.set()
            self.on_change()

    def _apply(self, event: Obj) -> None:
        obj, kind = event.get("object") or {}, event.get("type")
        key = key_of(obj)
        with self._lock:
            before = self._items.get(key)
            if kind == "DELETED" or (self.keep is not None and not self.keep(obj)):
                self._items.pop(key, None)
            else:
                self._items[key] = obj
            changed = before != self._items.get(key)
        if changed:
            self.on_change()

    # ------------------------------------------------------------------ loop

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """End the loop (an open watch is cut at once); `wait=False` lets several informers stop in parallel."""
        self._stop.set()
        if self._handle is not None:
            self._handle.stop()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._list_and_watch()
                delay = 0.2
            except Gone:
                self.stats["gone"] += 1
                log.info(
                    "%s: resourceVersion %s is too old (410 Gone); listing again", self.kind, self.resource_version
                )
            except KubeError as exc:
                if self._stop.is_set():
                    return
                if self.optional and exc.status == 404:
                    # The kind's CRD is not installed: nothing of it exists; look again later.
                    if not self.synced.is_set():
                        log.info("%s: not served by this cluster (CRD not installed); looking again later", self.kind)
                    self._replace([])
                    self._stop.wait(min(self.optional_retry_s, self.resync_s))
                    continue
                self._failed(exc, delay)
                delay = min(delay * 2, self.backoff_max_s)
            except Exception as exc:  # any failure: keep the cache, back off, list again
                if self._stop.is_set():
                    return
                self._failed(exc, delay)
                delay = min(delay * 2, self.backoff_max_s)

    def _failed(self, exc: Exception, delay: float) -> None:
        """Keep the cache, count and log the failure, and wait `delay` before listing again."""
        self.stats["errors"] += 1
        self.last_error = str(exc)
        log.warning("%s: list/watch failed (%s); retrying in %.1fs", self.kind, exc, delay)
        self._stop.wait(delay)

    def _list_and_watch(self) -> None:
        items, rv = self.kube.list(self.kind, namespace=self.namespace, label_selector=self.label_selector)
        self.stats["lists"] += 1
        self.resource_version = rv
        self._replace(items)
        listed = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - listed < self.resync_s:
            remaining = self.resync_s - (time.monotonic() - listed)
            self._handle = WatchHandle()
            self.stats["watches"] += 1
            for event in self.kube.watch(
                self.kind,
                resource_version=self.resource_version,
                namespace=self.namespace,
                label_selector=self.label_selector,
                timeout_seconds=max(1, int(min(self.watch_timeout_s, remaining))),
                handle=self._handle,
            ):
                if self._stop.is_set():
                    return
                meta = (event.get("object") or {}).get("metadata") or {}
                if meta.get("resourceVersion"):
                    self.resource_version = str(meta["resourceVersion"])
                if event.get("type") == "BOOKMARK":
                    self.stats["bookmarks"] += 1
                    continue
                self.stats["events"] += 1
                self._apply(event)
