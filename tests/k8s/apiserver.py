"""An in-process Kubernetes API server, faithful to list/watch semantics, for the official client.

Why: no Docker engine and no cluster exist where CI runs, yet the Kubernetes
provider must be tested against an API server rather than mocks. This speaks
enough of the Kubernetes REST API over HTTP on 127.0.0.1 for the official
`kubernetes` client: get, list (label and field selectors), watch (ADDED,
MODIFIED, DELETED, BOOKMARK; `410 Gone` as an ERROR event for a compacted
resourceVersion, as the real server answers), create, update, patch (merge,
strategic-merge treated as merge, JSON patch), delete (with ownerReference
garbage collection), the `status` subresource (the main resource ignores
status writes and vice versa) and optimistic concurrency (409 Conflict for a
stale resourceVersion). No-op updates do not bump the resourceVersion.

Test hooks: `compact()` (forget history: older resourceVersions get 410),
`close_watches()` (end open watches, as a server-side timeout does),
`inject()` (fail the next matching requests), `writes` (every write made,
so a test can assert that nothing was written).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.k8s.apiserver_rest import KINDS, ApiError, Kind, patch, route, selector, spec_of, true

Obj = dict[str, Any]


@dataclass
class _Event:
    rv: int
    kind: Kind
    type: str
    obj: Obj
    old: Obj | None


class ApiServer:
    """The state (objects, event history) and an HTTP front end on 127.0.0.1."""

    def __init__(self, *, bookmark_interval: float = 0.5) -> None:
        self.bookmark_interval = bookmark_interval
        self._cond = threading.Condition()
        self._rv = 100
        self._objects: dict[Kind, dict[tuple[str, str], Obj]] = {k: {} for k in KINDS}
        self._events: list[_Event] = []
        self._compacted = 0  # watches from a resourceVersion below this get 410 Gone
        self._watch_epoch = 0
        self._ips = itertools.count(10)
        self._node_ports = itertools.count(30000)
        self._injected: list[tuple[str, str, int, str]] = []
        self.writes: list[tuple[str, str]] = []  # (method, path) of every successful write
        self.watches_started = 0
        self._http: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ApiServer:
        server = self

        class Handler(_Handler):
            api = server

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, name="fake-apiserver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.close_watches()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    # ------------------------------------------------------------------ test hooks

    def compact(self) -> None:
        """Forget the event history: a watch from any resourceVersion seen so far gets 410 Gone."""
        with self._cond:
            self._compacted = self._rv
            self._events.clear()

    def close_watches(self) -> None:
        with self._cond:
            self._watch_epoch += 1
            self._cond.notify_all()

    def inject(self, method: str, path_contains: str, code: int, reason: str = "InternalError") -> None:
        """Fail the next request of `method` whose path contains `path_contains` with `code`."""
        self._injected.append((method, path_contains, code, reason))

    def resource_version(self) -> int:
        return self._rv

    def kind(self, kind: str) -> Kind:
        return next(k for k in KINDS if k.kind == kind)

    def apply(self, obj: Obj) -> Obj:
        """Create or replace (unconditionally), as `kubectl apply` would end up."""
        k = self.kind(obj["kind"])
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "default") if k.namespaced else ""
        with self._cond:
            if (ns, meta["name"]) in self._objects[k]:
                body = copy.deepcopy(obj)
                body["metadata"].pop("resourceVersion", None)
                out = self._update(k, ns, meta["name"], body, subresource=False)
                if k.status and "status" in obj:
                    out = self._update(k, ns, meta["name"], copy.deepcopy(obj), subresource=True)
                return out
            out = self._create(k, ns, copy.deepcopy(obj))
            if k.status and "status" in obj:
                out = self._update(k, ns, meta["name"], copy.deepcopy(obj), subresource=True)
            return out

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        k = self.kind(kind)
        with self._cond:
            found = self._objects[k].get((namespace if k.namespaced else "", name))
            return copy.deepcopy(found) if found else None

    def list(self, kind: str) -> list[Obj]:
        with self._cond:
            return [copy.deepcopy(o) for o in self._objects[self.kind(kind)].values()]

    def remove(self, kind: str, name: str, namespace: str = "default") -> None:
        k = self.kind(kind)
        with self._cond:
            self._delete(k, namespace if k.namespaced else "", name)

    def set_status(self, kind: str, name: str, status: Obj, namespace: str = "default") -> Obj:
        """What a kubelet or cloud controller would write (Deployment replicas, LoadBalancer ingress)."""
        k = self.kind(kind)
        with self._cond:
            current = self._objects[k][(namespace if k.namespaced else "", name)]
            body = {**copy.deepcopy(current), "status": status}
            body["metadata"].pop("resourceVersion", None)
            return self._update(k, namespace if k.namespaced else "", name, body, subresource=True)

    # ------------------------------------------------------------------ storage (lock held)

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, k: Kind, type_: str, obj: Obj, old: Obj | None) -> None:
        self._events.append(_Event(int(obj["metadata"]["resourceVersion"]), k, type_, copy.deepcopy(obj), old))
        self._cond.notify_all()

    def _create(self, k: Kind, ns: str, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if k.namespaced:
            if meta.get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if (ns, name) in self._objects[k]:
            raise ApiError(409, "AlreadyExists", f'{k.plural}.{k.group} "{name}" already exists')
        body["apiVersion"], body["kind"] = k.api_version, k.kind
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            resourceVersion=self._bump(),
        )
        if "spec" in body or k.status:
            meta["generation"] = 1
        if k.status:
            body.pop("status", None)
        if k.kind == "Service":
            self._allocate(body)
        if k.kind == "Namespace":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        self._objects[k][(ns, name)] = body
        self._record(k, "ADDED", body, None)
        return copy.deepcopy(body)

    def _allocate(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None":
            ip = f"10.96.0.{next(self._ips)}"
            spec.setdefault("clusterIP", ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["type"] in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports", []):
                port.setdefault("nodePort", next(self._node_ports))

    def _update(self, k: Kind, ns: str, name: str, body: Obj, *, subresource: bool) -> Obj:
        current = self._objects[k].get((ns, name))
        if current is None:
            raise ApiError(404, "NotFound", f'{k.plural}.{k.group} "{name}" not found')
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the request")
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {k.plural}.{k.group} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        if subresource:
            new = copy.deepcopy(current)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new["apiVersion"], new["kind"] = k.api_version, k.kind
            new_meta = new.setdefault("metadata", {})
            for keep in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                if keep in current["metadata"]:
                    new_meta[keep] = current["metadata"][keep]
            if k.status:
                if "status" in current:
                    new["status"] = current["status"]
                else:
                    new.pop("status", None)
            if k.kind == "Service":
                self._allocate(new)
            if spec_of(new) != spec_of(current):
                new_meta["generation"] = int(current["metadata"].get("generation", 0)) + 1
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)  # a no-op update: no new resourceVersion, no event
        new["metadata"]["resourceVersion"] = self._bump()
        self._objects[k][(ns, name)] = new
        self._record(k, "MODIFIED", new, current)
        return copy.deepcopy(new)

    def _delete(self, k: Kind, ns: str, name: str, *, orphan: bool = False) -> Obj:
        current = self._objects[k].pop((ns, name), None)
        if current is None:
            raise ApiError(404, "NotFound", f'{k.plural}.{k.group} "{name}" not found')
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._record(k, "DELETED", gone, current)
        if not orphan:  # the garbage collector: dependents go with their owner
            uid = current["metadata"]["uid"]
            for dk, objs in self._objects.items():
                for (dns, dname), obj in list(objs.items()):
                    refs = obj["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs) and (dns, dname) in objs:
                        self._delete(dk, dns, dname)
        return gone

    # ------------------------------------------------------------------ watch

    def watch(self, k: Kind, ns: str | None, query: dict[str, str]) -> Iterator[Obj]:
        """Watch events as dicts, until the timeout, `close_watches()` or `stop()`."""
        allow_bookmarks = true(query.get("allowWatchBookmarks"))
        timeout = float(query.get("timeoutSeconds") or 1800)
        rv = query.get("resourceVersion", "")
        deadline = time.monotonic() + timeout
        match = selector(query)
        with self._cond:
            self.watches_started += 1
            epoch = self._watch_epoch
            if rv in ("", "0"):
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for (ons, _), o in sorted(self._objects[k].items())
                    if (ns is None or ons == ns) and match(o)
                ]
                cursor = self._rv
            else:
                if int(rv) < self._compacted:
                    initial = [
                        {"type": "ERROR", "object": ApiError(410, "Expired", f"too old resource version: {rv}").body()}
                    ]
                    cursor = -1
                else:
                    initial, cursor = [], int(rv)
        yield from initial
        if cursor < 0:
            return
        last_bookmark = time.monotonic()
        while True:
            with self._cond:
                pending = [e for e in self._events if e.rv > cursor and e.kind == k]
                if not pending:
                    wait = min(deadline, last_bookmark + self.bookmark_interval) - time.monotonic()
                    if wait > 0 and epoch == self._watch_epoch:
                        self._cond.wait(wait)
                    pending = [e for e in self._events if e.rv > cursor and e.kind == k]
                current_rv = self._rv
                closed = epoch != self._watch_epoch
            for e in pending:
                cursor = e.rv
                obj_ns = e.obj["metadata"].get("namespace", "")
                if ns is not None and obj_ns != ns:
                    continue
                now_in, was_in = match(e.obj), e.old is not None and match(e.old)
                if e.type == "MODIFIED" and now_in != was_in:
                    yield {"type": "ADDED" if now_in else "DELETED", "object": e.obj}
                elif now_in or (e.type == "DELETED" and was_in):
                    yield {"type": e.type, "object": e.obj}
            if closed or time.monotonic() >= deadline:
                return
            if allow_bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                last_bookmark = time.monotonic()
                cursor = max(cursor, current_rv)
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": k.kind,
                        "apiVersion": k.api_version,
                        "metadata": {"resourceVersion": str(cursor)},
                    },
                }

    # ------------------------------------------------------------------ requests

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, content_type: str) -> Any:
        for i, (m, part, code, reason) in enumerate(self._injected):
            if m == method and part in path:
                del self._injected[i]
                raise ApiError(code, reason, "injected failure")
        k, ns, name, sub = route(path)
        with self._cond:
            if method == "GET" and name is None:
                return self._list(k, ns, query)
            if method == "GET" and name is not None:
                found = self._objects[k].get((ns or "", name))
                if found is None:
                    raise ApiError(404, "NotFound", f'{k.plural}.{k.group} "{name}" not found')
                return copy.deepcopy(found)
            if method == "POST" and name is None:
                out = self._create(k, ns or "", body)
            elif method == "PUT" and name is not None:
                out = self._update(k, ns or "", name, body, subresource=sub == "status")
            elif method == "PATCH" and name is not None:
                current = self._objects[k].get((ns or "", name))
                if current is None:
                    raise ApiError(404, "NotFound", f'{k.plural}.{k.group} "{name}" not found')
                patched = patch(copy.deepcopy(current), body, content_type)
                rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
                patched["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
                out = self._update(k, ns or "", name, patched, subresource=sub == "status")
            elif method == "DELETE" and name is not None:
                orphan = (body or {}).get("propagationPolicy") == "Orphan" or query.get("propagationPolicy") == "Orphan"
                out = self._delete(k, ns or "", name, orphan=orphan)
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
            self.writes.append((method, path))
            return out

    def _list(self, k: Kind, ns: str | None, query: dict[str, str]) -> Obj:
        match = selector(query)
        items = [copy.deepcopy(o) for (ons, _), o in sorted(self._objects[k].items()) if (ns is None or ons == ns)]
        return {
            "apiVersion": k.api_version,
            "kind": f"{k.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": [o for o in items if match(o)],
        }


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            if self.command == "GET" and true(query.get("watch")):
                k, ns, name, _ = route(url.path)
                if name is not None:
                    raise ApiError(405, "MethodNotAllowed", "watch a single object with a fieldSelector")
                self._stream(self.api.watch(k, ns, query))
                return
            out = self.api.handle(self.command, url.path, query, body, self.headers.get("Content-Type", ""))
            code = 201 if self.command == "POST" else 200
        except ApiError as exc:
            out, code = exc.body(), exc.code
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            out, code = ApiError(400, "BadRequest", f"bad request: {exc}").body(), 400
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: Iterator[Obj]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for event in events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
