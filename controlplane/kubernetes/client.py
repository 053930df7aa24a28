"""A small generic wrapper over the official `kubernetes` client: raw JSON objects of any kind.

Why generic: the controller reads a dozen kinds (Gateway API, our CRDs, core)
and only needs their JSON; the typed models would be converted back to dicts
anyway (the pure translation reads `Resource.body`). So every call goes
through the official client's `ApiClient.call_api` — which brings kubeconfig
and in-cluster configuration, TLS, bearer tokens and their refresh — with the
path built from one kind table. Watches are read line by line
(`kubernetes.watch.watch.iter_resp_lines`) so resourceVersions, BOOKMARKs and
`410 Gone` are handled by the informer, not hidden.

Everything here is blocking (urllib3); the controller runs it in threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("llmgw.kubernetes")
Obj = dict[str, Any]


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


GATEWAY_API = "gateway.networking.k8s.io"
KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo(GATEWAY_API, "v1", "gatewayclasses", "GatewayClass", namespaced=False),
        KindInfo(GATEWAY_API, "v1", "gateways", "Gateway"),
        KindInfo(GATEWAY_API, "v1", "httproutes", "HTTPRoute"),
        KindInfo(GATEWAY_API, "v1beta1", "referencegrants", "ReferenceGrant"),
        KindInfo("llmgw.dev", "v1alpha1", "aibackends", "AIBackend"),
        KindInfo("llmgw.dev", "v1alpha1", "gatewayparameters", "GatewayParameters"),
        KindInfo("inference.networking.k8s.io", "v1", "inferencepools", "InferencePool"),
        KindInfo("inference.networking.x-k8s.io", "v1alpha2", "inferenceobjectives", "InferenceObjective"),
        KindInfo("agentgateway.dev", "v1alpha1", "agentgatewaybackends", "AgentgatewayBackend"),
        KindInfo("agentgateway.dev", "v1alpha1", "agentgatewayparameters", "AgentgatewayParameters"),
        KindInfo("llmgw.dev", "v1alpha1", "aipolicies", "AIPolicy"),
        KindInfo("agentgateway.dev", "v1alpha1", "agentgatewaypolicies", "AgentgatewayPolicy"),
        KindInfo("", "v1", "secrets", "Secret"),
        KindInfo("", "v1", "configmaps", "ConfigMap"),
        KindInfo("", "v1", "namespaces", "Namespace", namespaced=False),
        KindInfo("", "v1", "services", "Service"),
        KindInfo("", "v1", "serviceaccounts", "ServiceAccount"),
        KindInfo("", "v1", "pods", "Pod"),
        KindInfo("apps", "v1", "deployments", "Deployment"),
        KindInfo("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
        KindInfo("coordination.k8s.io", "v1", "leases", "Lease"),
    )
}


class KubeError(Exception):
    """A failed API call: HTTP status (0: no response), the API's reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class Gone(KubeError):
    """410: the resourceVersion is too old (compacted); list again."""


def _error(exc: ApiException) -> KubeError:
    reason, message = str(exc.reason or ""), str(exc.body or exc.reason or "")
    try:
        body = json.loads(exc.body) if exc.body else {}
        reason, message = body.get("reason", reason), body.get("message", message)
    except (ValueError, AttributeError):
        pass
    cls = Gone if exc.status == 410 else KubeError
    return cls(int(exc.status or 0), reason, message)


class WatchHandle:
    """Lets another thread end a blocking watch read at once (informer stop)."""

    def __init__(self) -> None:
        self._resp: Any = None
        self._lock = threading.Lock()
        self.stopped = False

    def attach(self, resp: Any) -> None:
        with self._lock:
            self._resp = resp

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            conn = getattr(self._resp, "connection", None)
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class Kube:
    """get/list/watch/create/replace/replace_status/delete on raw JSON objects."""

    def __init__(self, api: k8s.ApiClient, *, request_timeout: float = 30.0) -> None:
        self.api = api
        self.request_timeout = request_timeout

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """In-cluster configuration when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = k8s.Configuration()
        if kubeconfig is None and context is None:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        return cls.for_configuration(configuration)

    @classmethod
    def for_configuration(cls, configuration: k8s.Configuration) -> Kube:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        return cls(k8s.ApiClient(configuration))

    def close(self) -> None:
        self.api.close()

    # ------------------------------------------------------------------ paths

    @staticmethod
    def path(kind: str, *, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        k = KINDS[kind]
        base = f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}"
        if k.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{k.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base

    def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None) -> Any:
        try:
            return self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            raise _error(exc) from None

    # ------------------------------------------------------------------ reads

    def list(
        self, kind: str, *, namespace: str | None = None, label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[Obj], str]:
        """Every object (of a namespace, or all), each with apiVersion/kind set, and the list's resourceVersion."""
        query = [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        out = self._call("GET", self.path(kind, namespace=namespace), query=query)
        k = KINDS[kind]
        items = [{**item, "apiVersion": k.api_version, "kind": k.kind} for item in out.get("items") or []]
        return items, str((out.get("metadata") or {}).get("resourceVersion", ""))

    def get(self, kind: str, name: str, *, namespace: str | None = None) -> Obj | None:
        try:
            out: Obj = self._call("GET", self.path(kind, namespace=namespace, name=name))
            return out
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def watch(
        self,
        kind: str,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str = "",
        timeout_seconds: int = 300,
        handle: WatchHandle | None = None,
    ) -> Iterator[Obj]:
        """Watch events from `resource_version` on, with bookmarks; ends when the server ends the watch.

        Raises `Gone` on a 410 (as an HTTP status or an ERROR event): the caller must list again.
        """
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        try:
            resp = self.api.call_api(
                self.path(kind, namespace=namespace),
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(10, timeout_seconds + 30),
            )
        except ApiException as exc:
            raise _error(exc) from None
        if handle is not None:
            handle.attach(resp)
        try:
            for line in iter_resp_lines(resp):
                if handle is not None and handle.stopped:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = int(status.get("code") or 0)
                    cls = Gone if code == 410 else KubeError
                    raise cls(code, str(status.get("reason", "")), str(status.get("message", "")))
                yield event
        finally:
            resp.release_conn()

    # ------------------------------------------------------------------ writes

    def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        out: Obj = self._call("POST", self.path(obj["kind"], namespace=meta.get("namespace")), body=obj)
        return out

    def replace(self, obj: Obj) -> Obj:
        """PUT; a stale metadata.resourceVersion gets 409 Conflict (optimistic concurrency)."""
        meta = obj["metadata"]
        path = self.path(obj["kind"], namespace=meta.get("namespace"), name=meta["name"])
        out: Obj = self._call("PUT", path, body=obj)
        return out

    def replace_status(self, obj: Obj) -> Obj:
        """PUT on the status subresource: only `status` changes; resourceVersion as for `replace`."""
        meta = obj["metadata"]
        path = self.path(obj["kind"], namespace=meta.get("namespace"), name=meta["name"], sub="status")
        out: Obj = self._call("PUT", path, body=obj)
        return out

    def delete(self, kind: str, name: str, *, namespace: str | None = None) -> None:
        try:
            self._call(
                "DELETE", self.path(kind, namespace=namespace, name=name), body={"propagationPolicy": "Background"}
            )
        except KubeError as exc:
            if exc.status != 404:
                raise
