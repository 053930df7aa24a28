"""`llmgw controller`: informers -> the pure reconcile -> xDS/extproc config, status and data planes.

The loop: informers (threads) keep a cache per kind and mark the controller
dirty; after a short debounce one reconcile runs `reconcile.reconcile` on the
cache and then performs the Plan:

- every replica publishes each Gateway's extproc config (credentials first,
  so new routes find them) and its xDS snapshot, only when they changed;
- the leader alone (Lease) provisions data planes and writes status, each
  object only when what it carries differs from what was computed. A 409
  Conflict is not retried blindly: the informer delivers the newer object,
  which triggers the next reconcile.

Secrets and ConfigMaps are cached only when a backend (AIBackend, AgentgatewayBackend),
a Gateway or a policy (AIPolicy, AgentgatewayPolicy: API key Secrets by name) refers to
them, by name or by a policy's `secretSelector` / `configMapSelector`, and Services only
when an HTTPRoute sends to them; a newly referenced one is fetched at once, and updates
arrive by watch, so a rotated or revoked key reaches new requests within the debounce
plus one config push. agentgateway's AgentgatewayBackend, AgentgatewayParameters and
AgentgatewayPolicy are watched when their CRDs are installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controlplane.health_metrics import ConfigHealth, ControlPlaneCollector
from controlplane.kubernetes import provision, xds_tls
from controlplane.kubernetes.client import Kube, KubeError
from controlplane.kubernetes.informer import Informer, Obj
from controlplane.kubernetes.leader import LeaderElector
from controlplane.kubernetes.reconcile import Plan, Selector, ours, reconcile, referenced, selected
from controlplane.kubernetes.xds import GatewayAds, GatewayChannels
from controlplane.resources import Resource
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.tracing import TracingSettings
from controlplane.xds.translate import to_protos
from controlplane.xds.translate import translate as translate_ir

log = logging.getLogger("llmgw.controller")

TRANSLATED = (
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    "AIBackend",
    "GatewayParameters",
    "AgentgatewayBackend",
    "AgentgatewayParameters",
    "AIPolicy",
    "AgentgatewayPolicy",
    "Namespace",
    "Secret",
    "ConfigMap",
    # InferencePools, their objectives and model-server pods (every Pod: a pool selects by label).
    "InferencePool",
    "InferenceObjective",
    "Pod",
)
REFERENCED_ONLY = ("Secret", "ConfigMap")
# Services HTTPRoutes send to and InferencePools name as their endpoint pickers: cached only when
# referenced (beside the MANAGED informer of our own).
BACKEND_SERVICES = "BackendService"
REFERENCED = {"Secret": "Secret", "ConfigMap": "ConfigMap", "Service": BACKEND_SERVICES}  # kind -> informer
# Kinds whose CRDs a cluster may not have (agentgateway's, the Inference Extension's): watched when
# their CRDs are installed, an empty cache when they are not.
OPTIONAL = (
    "AgentgatewayBackend",
    "AgentgatewayParameters",
    "AgentgatewayPolicy",
    "InferencePool",
    "InferenceObjective",
)
MANAGED = ("ServiceAccount", "Service", "Deployment")
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=llmgw"


@dataclass
class Options:
    settings: provision.Settings
    namespace: str = "llmgw-system"  # where the Lease lives
    identity: str = ""  # this replica in the Lease; default: host name + pid
    xds_listen: str = "0.0.0.0:18000"
    health_listen: tuple[str, int] | None = ("0.0.0.0", 8081)
    leader_election: bool = True
    lease_name: str = "llmgw-controller"
    resync_s: float = 600.0
    debounce_s: float = 0.1
    tracing: TracingSettings | None = None  # every data plane's Envoy traces to this collector


def to_resource(obj: Obj) -> Resource:
    meta = obj.get("metadata") or {}
    return Resource(
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or ""),
        body=obj,
        creation=str(meta.get("creationTimestamp") or ""),
    )


def _decoded(secret: Obj) -> dict[str, str]:
    data = secret.get("data") or {}
    out = {k: base64.b64decode(v).decode() for k, v in data.items() if isinstance(v, str)}
    out.update({k: v for k, v in (secret.get("stringData") or {}).items() if isinstance(v, str)})
    return out


def _version(live: Obj) -> dict[str, Any]:
    meta = live.get("metadata") or {}
    return {"resourceVersion": meta["resourceVersion"]} if "resourceVersion" in meta else {}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(self, kube: Kube, opts: Options) -> None:
        self.kube = kube
        self.opts = opts
        self.identity = opts.identity or f"{socket.gethostname()}-{id(self):x}"
        self.ads = GatewayAds()
        self.channels = GatewayChannels()
        self.informers: dict[str, Informer] = {}
        self.referenced: set[tuple[str, str, str]] = set()
        self.selected: set[Selector] = set()  # API key policies' secretSelector / configMapSelector
        self.leader = not opts.leader_election
        self.provision_errors: dict[str, str] = {}
        self.plan: Plan | None = None
        self.xds_port = 0
        self.xds_ca: xds_tls.Pem | None = None
        self.reconciles = 0
        self.status_writes = 0
        self._problems: set[str] = set()
        self._extproc_versions: dict[str, str] = {}
        self._serial = 0
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._elector: LeaderElector | None = None
        self.health = ConfigHealth()  # served on the health port's /metrics (controlplane/health_metrics.py)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._grpc = grpc.aio.server(options=[("grpc.max_send_message_length", -1)])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self._grpc)
        self._grpc.add_generic_rpc_handlers((self.channels.handler(),))
        if self.opts.settings.xds_tls:
            # Mutual TLS with the data planes (kubernetes/xds_tls.py); the CA is shared by every replica.
            self.xds_ca = await asyncio.to_thread(self._ensure_ca)
            server = xds_tls.issue_server(self.xds_ca, hosts=[self.opts.settings.xds_host])
            creds = xds_tls.server_credentials(self.xds_ca, server)
            self.xds_port = self._grpc.add_secure_port(self.opts.xds_listen, creds)
            self.ads.verify_peer = self.channels.verify_peer = True
        else:
            self.xds_port = self._grpc.add_insecure_port(self.opts.xds_listen)
        await self._grpc.start()
        for kind in TRANSLATED:
            keep = self._keep if kind in REFERENCED_ONLY else None
            self.informers[kind] = Informer(
                self.kube,
                kind,
                on_change=self.mark_dirty,
                keep=keep,
                resync_s=self.opts.resync_s,
                optional=kind in OPTIONAL,
            ).start()
        self.informers[BACKEND_SERVICES] = Informer(
            self.kube, "Service", on_change=self.mark_dirty, keep=self._keep, resync_s=self.opts.resync_s
        ).start()
        for kind in MANAGED:
            self.informers[kind] = Informer(
                self.kube, kind, on_change=self.mark_dirty, label_selector=MANAGED_SELECTOR, resync_s=self.opts.resync_s
            ).start()
        if self.opts.leader_election:
            self._elector = LeaderElector(
                self.kube,
                name=self.opts.lease_name,
                namespace=self.opts.namespace,
                identity=self.identity,
                on_change=self._leader_changed,
            ).start()
        if self.opts.health_listen:
            self._http = await self._serve_health(*self.opts.health_listen)
        self._task = asyncio.create_task(self._run(), name="controller-reconcile")
        log.info("controller %s started; xDS and extproc config on %s", self.identity, self.opts.xds_listen)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._elector is not None:
            await asyncio.to_thread(self._elector.stop)
        for informer in self.informers.values():
            informer.stop(wait=False)
        for informer in self.informers.values():
            await asyncio.to_thread(informer.stop)
        if self._http is not None:
            await self._http.cleanup()
        if self._grpc is not None:
            await self._grpc.stop(grace=1)

    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers.values())

    def mark_dirty(self) -> None:
        """Thread-safe: something changed; reconcile soon."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._dirty.set)

    def _leader_changed(self, leader: bool) -> None:
        def apply() -> None:
            self.leader = leader
            self._dirty.set()

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(apply)

    def _keep(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        kind, ns = str(obj.get("kind")), str(meta.get("namespace") or "")
        if (kind, ns, str(meta.get("name"))) in self.referenced:
            return True
        labels = meta.get("labels") or {}
        return any(k == kind and n == ns and all(labels.get(a) == b for a, b in want) for k, n, want in self.selected)

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.opts.debounce_s)
            self._dirty.clear()
            if not self.synced():
                continue
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("reconcile failed; retrying")
                await asyncio.sleep(1.0)
                self._dirty.set()

    # ------------------------------------------------------------------ one reconcile

    def resources(self) -> list[Resource]:
        return [to_resource(o) for kind in (*TRANSLATED, BACKEND_SERVICES) for o in self.informers[kind].items()]

    async def reconcile_once(self) -> Plan:
        resources = self.resources()
        if await self._follow_references(resources):
            resources = self.resources()
        observed = {}
        for gw in ours(resources)[1]:
            deployment = self.informers["Deployment"].get(gw.namespace, gw.name)
            service = self.informers["Service"].get(gw.namespace, gw.name)
            observed[gw.key] = provision.observe(deployment, service, error=self.provision_errors.get(gw.key, ""))
        plan = await asyncio.to_thread(reconcile, resources, settings=self.opts.settings, observed=observed, now=_now())
        self.plan = plan
        self.reconciles += 1
        self._log_problems(plan)
        await self._publish(plan)
        self._forget({gw.key for gw in ours(resources)[1]})
        if self.leader:
            await asyncio.to_thread(self._write, plan, resources)
        return plan

    async def _follow_references(self, resources: list[Resource]) -> bool:
        """Cache exactly the referenced (and policy-selected) Secrets/ConfigMaps; fetch new ones now."""
        refs, sels = referenced(resources), selected(resources)
        if refs == self.referenced and sels == self.selected:
            return False
        added = refs - self.referenced
        new_selectors = sels - self.selected
        self.referenced, self.selected = refs, sels
        for kind, ns, labels in sorted(new_selectors):
            try:
                objs, _ = await asyncio.to_thread(
                    self.kube.list, kind, namespace=ns, label_selector=",".join(f"{k}={v}" for k, v in labels)
                )
            except KubeError as exc:
                log.warning("cannot list %s in %s by labels: %s", kind, ns, exc)
                continue
            for item in objs:
                self.informers[kind].put({**item, "kind": kind, "apiVersion": "v1"})
        for informer in REFERENCED.values():
            self.informers[informer].prune()
        for kind, ns, name in sorted(added):
            if self.informers[REFERENCED[kind]].get(ns, name) is None:
                try:
                    obj = await asyncio.to_thread(self.kube.get, kind, name, namespace=ns)
                except KubeError as exc:
                    log.warning("cannot read %s %s/%s: %s", kind, ns, name, exc)
                    continue
                if obj is not None:
                    self.informers[REFERENCED[kind]].put({**obj, "kind": kind, "apiVersion": "v1"})
        return True

    async def _publish(self, plan: Plan) -> None:
        for key, gp in sorted(plan.gateways.items()):
            try:
                # The data-plane sidecar serves the pause oracle next to Envoy (dataplane.py).
                oracle = ("127.0.0.1", self.opts.settings.ready_port)
                protos = to_protos(translate_ir(gp.ir, pause_oracle=oracle, tracing=self.opts.tracing), ir=gp.ir)
            except json_format.ParseError as exc:  # our bug, not the user's: keep the last good config
                log.error("Gateway %s: generated invalid Envoy config, keeping the last good one: %s", key, exc)
                self.health.refused()
                continue
            if self._extproc_versions.get(key) != gp.extproc.version:
                await self.channels.publish(key, gp.extproc)
                self._extproc_versions[key] = gp.extproc.version
            self._serial += 1
            snap = Snapshot.build(serial=self._serial, protos=protos)
            old = self.ads.snapshot(key)
            if old is None or {t: v.version for t, v in old.types.items()} != {
                t: v.version for t, v in snap.types.items()
            }:
                await self.ads.set_snapshot(key, snap)
                self.health.applied(serial=self._serial)
                log.info("Gateway %s: new data plane config (snapshot %d)", key, self._serial)

    def _forget(self, gateways: set[str]) -> None:
        """Drop the config of Gateways that are gone or no longer ours (a Gateway that is ours but
        currently invalid keeps its last good config)."""
        for key in set(self.ads.servers) | set(self.channels.channels):
            if key not in gateways:
                self.ads.drop(key)
                self.channels.drop(key)
                self._extproc_versions.pop(key, None)

    def _log_problems(self, plan: Plan) -> None:
        lines = {f"{p.obj}: {p.field + ': ' if p.field else ''}{p.message} [{p.reason}]" for p in plan.problems}
        for line in sorted(lines - self._problems):
            log.warning("%s", line)
        for line in sorted(self._problems - lines):
            log.info("resolved: %s", line)
        self._problems = lines

    # ------------------------------------------------------------------ writes (leader only; in a thread)

    def _write(self, plan: Plan, resources: Iterable[Resource]) -> None:
        errors_before = dict(self.provision_errors)
        for key, gp in plan.gateways.items():
            self.provision_errors[key] = self._provision(gp.gateway, gp.objects)
        self._cleanup({gw.key for gw in ours(resources)[1]})
        for skey, desired in plan.statuses.items():
            informer = self.informers[skey.kind]
            live = informer.get(skey.namespace, skey.name)
            if live is None or live.get("status") == desired:
                continue
            try:
                self.kube.replace_status({**live, "status": desired})
                self.status_writes += 1
            except KubeError as exc:
                if exc.status not in (404, 409):
                    log.warning("cannot write the status of %s %s/%s: %s", skey.kind, skey.namespace, skey.name, exc)
                self.mark_dirty()
        if self.provision_errors != errors_before:
            self.mark_dirty()

    def _ensure_ca(self) -> xds_tls.Pem:
        """The xds CA from its Secret in the controller's namespace, created on first start."""
        ns = self.opts.namespace
        for _ in range(3):
            live = self.kube.get("Secret", xds_tls.CA_SECRET, namespace=ns)
            if live is not None:
                data = _decoded(live)
                return xds_tls.Pem(data.get("ca.crt", ""), data.get("ca.key", ""))
            ca = xds_tls.new_ca()
            try:
                self.kube.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": xds_tls.CA_SECRET, "namespace": ns, "labels": dict(provision.MANAGED_BY)},
                        "type": "Opaque",
                        "stringData": {"ca.crt": ca.cert, "ca.key": ca.key},
                    }
                )
                log.info("created the xds CA Secret %s/%s", ns, xds_tls.CA_SECRET)
                return ca
            except KubeError as exc:
                if exc.status != 409:  # another replica created it first: read theirs
                    raise
        raise RuntimeError(f"cannot read or create the Secret {ns}/{xds_tls.CA_SECRET}")

    def _client_secret(self, gateway: Resource) -> str:
        """The Gateway's client certificate Secret, (re)issued when missing or from another CA."""
        if self.xds_ca is None:
            return ""
        name = xds_tls.client_secret_name(gateway.name)
        live = self.kube.get("Secret", name, namespace=gateway.namespace)
        if live is not None and not provision.owned_by(live, gateway):
            return f"Secret {gateway.namespace}/{name} exists and is not owned by this Gateway; delete or rename it"
        if live is None or not xds_tls.same_ca(_decoded(live), self.xds_ca):
            client = xds_tls.issue_client(self.xds_ca, gateway=gateway.key)
            desired = provision.client_secret(
                gateway,
                {xds_tls.CA_FILE: self.xds_ca.cert, xds_tls.CERT_FILE: client.cert, xds_tls.KEY_FILE: client.key},
            )
            if live is None:
                self.kube.create(desired)
            else:
                self.kube.replace({**desired, "metadata": {**desired["metadata"], **_version(live)}})
            log.info("issued the xds client certificate of Gateway %s", gateway.key)
        return ""

    def _provision(self, gateway: Resource, objects: list[dict[str, Any]]) -> str:
        """Create or update the Gateway's objects; "" or why it failed (Programmed False NoResources)."""
        try:
            problem = self._client_secret(gateway)
        except KubeError as exc:
            return f"cannot provision the xds client Secret: {exc.message or exc}"
        if problem:
            return problem
        for desired in objects:
            kind, meta = desired["kind"], desired["metadata"]
            what = f"{kind} {meta['namespace']}/{meta['name']}"
            live = self.informers[kind].get(meta["namespace"], meta["name"])
            try:
                if live is None:
                    try:
                        self.kube.create(desired)
                        log.info("created %s for Gateway %s", what, gateway.key)
                        continue
                    except KubeError as exc:
                        if exc.status != 409:
                            raise
                        live = self.kube.get(kind, meta["name"], namespace=meta["namespace"])
                        if live is None:
                            continue
                if not provision.owned_by(live, gateway):
                    return f"{what} exists and is not owned by this Gateway; delete or rename it"
                if provision.needs_update(live, desired):
                    self.kube.replace(provision.for_update(live, desired))
                    log.info("updated %s for Gateway %s", what, gateway.key)
            except KubeError as exc:
                if exc.status == 409:
                    self.mark_dirty()
                    continue
                return f"cannot provision {what}: {exc.message or exc}"
        return ""

    def _cleanup(self, our_gateways: set[str]) -> None:
        """Delete data planes of Gateways that are no longer ours (deleted ones go by garbage collection)."""
        for kind in MANAGED:
            for obj in self.informers[kind].items():
                meta = obj.get("metadata") or {}
                gw = (meta.get("labels") or {}).get(provision.GATEWAY_LABEL)
                if gw and f"{meta.get('namespace')}/{gw}" not in our_gateways:
                    try:
                        self.kube.delete(kind, str(meta.get("name")), namespace=str(meta.get("namespace")))
                        self.provision_errors.pop(f"{meta.get('namespace')}/{gw}", None)
                        log.info(
                            "deleted %s %s/%s: its Gateway is gone or not ours",
                            kind,
                            meta.get("namespace"),
                            meta.get("name"),
                        )
                    except KubeError as exc:
                        log.warning("cannot delete %s %s/%s: %s", kind, meta.get("namespace"), meta.get("name"), exc)

    # ------------------------------------------------------------------ health

    async def _serve_health(self, host: str, port: int) -> web.AppRunner:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_: web.Request) -> web.Response:
            ok = self.synced() and self.reconciles > 0
            return web.Response(status=200 if ok else 503, text="ready\n" if ok else "informers not synced\n")

        collector = ControlPlaneCollector(health=self.health, servers=lambda: list(self.ads.servers.values()))

        async def metrics(_: web.Request) -> web.Response:
            """Control-plane health over every Gateway's ADS server (acks, NACKs, snapshot served)."""
            registry = CollectorRegistry()
            registry.register(collector)
            return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


def own_image(kube: Kube, *, namespace: str, pod: str, fallback: str = "llmgw:dev") -> str:
    """The controller's own container image (data planes run the same one), read from its Pod."""
    if pod:
        try:
            found = kube.get("Pod", pod, namespace=namespace)
        except KubeError as exc:
            log.warning(
                "cannot read my Pod %s/%s for its image (%s); data planes use %s", namespace, pod, exc, fallback
            )
            return fallback
        for container in ((found or {}).get("spec") or {}).get("containers") or []:
            if container.get("name") == "controller" and container.get("image"):
                return str(container["image"])
    return fallback


async def run(kube: Kube, opts: Options) -> int:
    """Run until SIGINT/SIGTERM (the `llmgw controller` command)."""
    controller = Controller(kube, opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await controller.start()
    await stop.wait()
    log.info("stopping: releasing the Lease, closing watches")
    await controller.stop()
    kube.close()
    return 0
