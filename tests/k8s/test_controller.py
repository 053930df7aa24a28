"""The controller (informers -> reconcile -> status, provisioning, per-Gateway xDS and extproc config) against
the in-process API server, through the official client. No Envoy here; `test_e2e.py` adds the data plane."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import grpc
import pytest

from controlplane.kubernetes.client import Kube
from controlplane.kubernetes.controller import Controller, Options
from controlplane.kubernetes.provision import Settings
from controlplane.xds import names
from extproc.contract import ExtprocConfig
from extproc.wire import CONFIG_WATCH_METHOD as METHOD
from tests.asyncio_leaks import settle
from tests.harness import wait_until
from tests.k8s import manifests as m
from tests.k8s.apiserver import ApiServer
from tests.k8s.conftest import configuration
from tests.k8s.localpod import secret_files


class Running:
    """A Controller on its own event loop thread, as `llmgw controller` runs it."""

    def __init__(self, apiserver: ApiServer, **opts: Any) -> None:
        self.kube = Kube.for_configuration(configuration(apiserver))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        options = Options(
            settings=Settings(image="llmgw:test", xds_host="127.0.0.1"),
            xds_listen="127.0.0.1:0",
            health_listen=None,
            leader_election=opts.pop("leader_election", False),
            debounce_s=0.05,
            **opts,
        )
        self.controller = Controller(self.kube, options)
        self.call(self.controller.start())

    def call(self, coro: Any, timeout: float = 20) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        self.call(self.controller.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.kube.close()


@pytest.fixture
def run_controller(apiserver: ApiServer) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**opts: Any) -> Running:
        r = Running(apiserver, **opts)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def backends_in(snap: Any) -> set[str]:
    """The AIBackends a snapshot has clusters for ("aibackend/<ns>/<name>" and its variants)."""
    return {name.split("/", 1)[1] for name in snap.types[names.TYPE_CLUSTER].by_name}


def apply_all(apiserver: ApiServer, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        apiserver.apply(obj)


def status_of(apiserver: ApiServer, kind: str, name: str, ctype: str, *path: str | int, ns: str = "default") -> Any:
    return m.condition(apiserver.get(kind, name, ns), ctype, *path)


def test_quickstart_is_accepted_provisioned_and_programmed(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(apiserver, m.quickstart())
    ctl = run_controller()
    wait_until(lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("True", "Accepted"), "Gateway Accepted")
    assert status_of(apiserver, "GatewayClass", "llmgw", "Accepted", ns="") == ("True", "Accepted")
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "Programmed") == ("True", "Programmed"), "AIBackend")
    assert status_of(apiserver, "HTTPRoute", "openai", "Accepted", "parents", 0) == ("True", "Accepted")
    assert status_of(apiserver, "HTTPRoute", "openai", "ResolvedRefs", "parents", 0) == ("True", "ResolvedRefs")

    gw = apiserver.get("Gateway", "llmgw")
    assert gw is not None
    for kind in ("ServiceAccount", "Service", "Deployment"):

        def exists(kind: str = kind) -> bool:
            return apiserver.get(kind, "llmgw") is not None

        wait_until(exists, f"the {kind}")
        obj = apiserver.get(kind, "llmgw")
        assert obj is not None and obj["metadata"]["ownerReferences"][0]["uid"] == gw["metadata"]["uid"]
    assert status_of(apiserver, "Gateway", "llmgw", "Programmed") == ("False", "Pending")

    # What the kubelet and the cloud load balancer would report:
    apiserver.set_status("Deployment", "llmgw", {"replicas": 1, "availableReplicas": 1})
    wait_until(
        lambda: status_of(apiserver, "Gateway", "llmgw", "Programmed") == ("False", "AddressNotAssigned"), "no address"
    )
    apiserver.set_status("Service", "llmgw", {"loadBalancer": {"ingress": [{"ip": "20.0.0.1"}]}})
    wait_until(lambda: status_of(apiserver, "Gateway", "llmgw", "Programmed") == ("True", "Programmed"), "Programmed")
    gw = apiserver.get("Gateway", "llmgw")
    assert gw is not None and gw["status"]["addresses"] == [{"type": "IPAddress", "value": "20.0.0.1"}]
    assert gw["status"]["listeners"][0]["attachedRoutes"] == 1

    # The Gateway's own snapshot: its listener on the in-pod port, its backend's cluster.
    snap = ctl.controller.ads.snapshot("default/llmgw")
    assert snap is not None
    assert backends_in(snap) == {"default/openai"}
    assert len(snap.types[names.TYPE_LISTENER].by_name) == 1


def test_status_is_written_only_when_it_changes(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(apiserver, m.quickstart())
    ctl = run_controller()
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "Programmed") == ("True", "Programmed"), "status")
    wait_until(lambda: apiserver.get("Deployment", "llmgw") is not None, "provisioning")
    settled = ctl.controller.reconciles
    wait_until(lambda: ctl.controller.reconciles == settled, "quiet", timeout=2)
    writes = list(apiserver.writes)
    # Something unrelated changes: a reconcile runs and writes nothing.
    apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unrelated"}})
    wait_until(lambda: ctl.controller.reconciles > settled, "a reconcile")
    assert apiserver.writes == writes


def test_missing_secret_is_named_then_resolved(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(apiserver, [m.gatewayclass(), m.gateway(), m.route(), m.aibackend(secret="later")])
    run_controller()
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "ResolvedRefs") == ("False", "RefNotFound"), "ref")
    backend = apiserver.get("AIBackend", "openai")
    assert backend is not None
    msg = next(c["message"] for c in backend["status"]["conditions"] if c["type"] == "ResolvedRefs")
    assert "Secret default/later not found" in msg
    assert status_of(apiserver, "HTTPRoute", "openai", "ResolvedRefs", "parents", 0) == ("False", "BackendNotFound")
    apiserver.apply(m.secret("later", field="api-key"))
    wait_until(lambda: "has no key 'Authorization'" in str(apiserver.get("AIBackend", "openai")), "missing key named")
    apiserver.apply(m.secret("later"))
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "Accepted") == ("True", "Accepted"), "Accepted")
    wait_until(
        lambda: status_of(apiserver, "HTTPRoute", "openai", "ResolvedRefs", "parents", 0) == ("True", "ResolvedRefs"),
        "route resolved",
    )


def test_only_referenced_secrets_are_cached(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apiserver.apply(m.secret("unrelated", "sk-not-ours"))
    apiserver.apply(m.secret())  # exists before anything refers to it
    ctl = run_controller()
    wait_until(lambda: ctl.controller.synced() and ctl.controller.reconciles > 0, "sync")
    assert ctl.controller.informers["Secret"].items() == []
    apply_all(apiserver, [m.gatewayclass(), m.gateway(), m.route(), m.aibackend()])
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "Accepted") == ("True", "Accepted"), "fetched")
    cached = [o["metadata"]["name"] for o in ctl.controller.informers["Secret"].items()]
    assert cached == ["openai-key"]
    apiserver.remove("AIBackend", "openai")
    wait_until(lambda: ctl.controller.informers["Secret"].items() == [], "pruned")


def client_credentials(apiserver: ApiServer, gateway: str) -> grpc.ChannelCredentials:
    """The mutual-TLS credentials the controller issued to Gateway "<ns>/<name>"'s pods."""
    ns, name = gateway.split("/")
    files = secret_files(apiserver.get("Secret", f"{name}-llmgw-xds", ns))
    return grpc.ssl_channel_credentials(
        root_certificates=files["ca.crt"], private_key=files["tls.key"], certificate_chain=files["tls.crt"]
    )


async def read_configs(
    port: int, worker: str, count: int, *, creds: grpc.ChannelCredentials, received: asyncio.Event | None = None
) -> list[ExtprocConfig]:
    """The first `count` configs the config channel sends `worker`; `received` is set at each one."""
    out: list[ExtprocConfig] = []
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        method = channel.unary_stream(METHOD, request_serializer=None, response_deserializer=None)
        call = method(worker.encode())
        try:
            async for raw in call:
                out.append(ExtprocConfig.from_json(raw))
                if received is not None:
                    received.set()
                if len(out) == count:
                    break
        finally:
            call.cancel()  # the stream we no longer read
    return out


def test_secret_rotation_reaches_only_that_gateways_extproc(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(apiserver, m.quickstart())
    apply_all(
        apiserver,
        [
            m.gateway("other", port=81),
            m.route("r2", gateway="other", backend="b2"),
            m.aibackend("b2", secret="k2"),
            m.secret("k2", "sk-other"),
        ],
    )
    ctl = run_controller()
    wait_until(lambda: status_of(apiserver, "AIBackend", "openai", "Programmed") == ("True", "Programmed"), "ready")
    port = ctl.controller.xds_port

    async def first_then_rotated() -> list[ExtprocConfig]:
        first = asyncio.Event()
        creds = client_credentials(apiserver, "default/llmgw")
        reader = asyncio.create_task(read_configs(port, "extproc-0@default/llmgw", 2, creds=creds, received=first))
        await asyncio.wait_for(first.wait(), 10)  # the worker holds the first config: rotate now
        apiserver.apply(m.secret(key="sk-two"))
        configs = await asyncio.wait_for(reader, 10)
        await settle()  # grpc.aio finishes its cancelled call's status task on its own
        return configs

    async def other_gateway() -> list[ExtprocConfig]:
        creds = client_credentials(apiserver, "default/other")
        configs = await asyncio.wait_for(read_configs(port, "extproc-0@default/other", 1, creds=creds), 10)
        await settle()
        return configs

    first, rotated = asyncio.run(first_then_rotated())
    assert [p.auth.value for p in first.providers.values() if p.auth] == ["sk-one"]
    assert [p.auth.value for p in rotated.providers.values() if p.auth] == ["sk-two"]
    (other,) = asyncio.run(other_gateway())
    assert [p.auth.value for p in other.providers.values() if p.auth] == ["sk-other"]


def test_two_gateways_on_one_port_each_get_their_own_snapshot(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(apiserver, m.quickstart())
    apply_all(apiserver, [m.gateway("second"), m.route("r2", gateway="second", backend="b2"), m.aibackend("b2")])
    ctl = run_controller()
    wait_until(lambda: ctl.controller.ads.snapshot("default/second") is not None, "second snapshot")
    wait_until(lambda: ctl.controller.ads.snapshot("default/llmgw") is not None, "first snapshot")
    for gw, backend in (("default/llmgw", "openai"), ("default/second", "b2")):
        snap = ctl.controller.ads.snapshot(gw)
        assert snap is not None
        assert backends_in(snap) == {f"default/{backend}"}
    wait_until(lambda: status_of(apiserver, "Gateway", "second", "Accepted") == ("True", "Accepted"), "both accepted")
    assert status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("True", "Accepted")


def test_deleting_the_gateway_removes_its_data_plane(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(apiserver, m.quickstart())
    ctl = run_controller()
    wait_until(lambda: apiserver.get("Deployment", "llmgw") is not None, "provisioning")
    apiserver.remove("Gateway", "llmgw")
    wait_until(lambda: apiserver.get("Deployment", "llmgw") is None, "garbage collection")
    assert apiserver.get("Service", "llmgw") is None and apiserver.get("ServiceAccount", "llmgw") is None
    wait_until(
        lambda: status_of(apiserver, "AIBackend", "openai", "Programmed") == ("False", "NotReferenced"), "unused"
    )
    assert ctl.controller.ads.snapshot("default/llmgw") is None  # its config (and credentials) are forgotten
    assert "default/llmgw" not in ctl.controller.channels.channels


def test_a_gateway_leaving_our_class_loses_its_data_plane(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apply_all(apiserver, [*m.quickstart(), m.gatewayclass("other", "example.com/other")])
    run_controller()
    wait_until(lambda: apiserver.get("Deployment", "llmgw") is not None, "provisioning")
    apiserver.apply(m.gateway(cls="other"))
    wait_until(lambda: apiserver.get("Deployment", "llmgw") is None, "cleanup")


def test_an_object_we_do_not_own_blocks_provisioning(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    apiserver.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "llmgw", "namespace": "default", "labels": {"app.kubernetes.io/managed-by": "llmgw"}},
            "spec": {"ports": [{"port": 1}]},
        }
    )
    apply_all(apiserver, m.quickstart())
    run_controller()
    wait_until(
        lambda: status_of(apiserver, "Gateway", "llmgw", "Programmed") == ("False", "NoResources"), "NoResources"
    )
    gw = apiserver.get("Gateway", "llmgw")
    assert "Service default/llmgw exists and is not owned by this Gateway" in str(gw)


def test_a_conflicting_status_write_is_retried(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(apiserver, m.quickstart())
    apiserver.inject("PUT", "/gateways/llmgw/status", 409, "Conflict")
    run_controller()
    wait_until(lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("True", "Accepted"), "status")


def test_parameters_change_the_deployment(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    params = {
        "apiVersion": "llmgw.dev/v1alpha1",
        "kind": "GatewayParameters",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"replicas": 2},
    }
    ref = {"parametersRef": {"group": "llmgw.dev", "kind": "GatewayParameters", "name": "p"}}
    apply_all(
        apiserver, [params, m.gatewayclass(), m.gateway(infrastructure=ref), m.route(), m.aibackend(), m.secret()]
    )
    run_controller()
    wait_until(lambda: (apiserver.get("Deployment", "llmgw") or {}).get("spec", {}).get("replicas") == 2, "2 replicas")
    apiserver.apply({**params, "spec": {"replicas": 3, "service": {"type": "ClusterIP"}}})
    wait_until(lambda: (apiserver.get("Deployment", "llmgw") or {}).get("spec", {}).get("replicas") == 3, "3 replicas")
    wait_until(
        lambda: (apiserver.get("Service", "llmgw") or {}).get("spec", {}).get("type") == "ClusterIP", "ClusterIP"
    )
    svc = apiserver.get("Service", "llmgw")
    assert svc is not None and svc["spec"]["clusterIP"].startswith("10.96.")  # kept across the update
    apiserver.remove("GatewayParameters", "p")
    wait_until(
        lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("False", "InvalidParameters"), "invalid"
    )


def test_only_the_leader_writes(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(apiserver, m.quickstart())
    a = run_controller(leader_election=True, identity="a")
    b = run_controller(leader_election=True, identity="b")
    wait_until(lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("True", "Accepted"), "status")
    wait_until(lambda: a.controller.ads.snapshot("default/llmgw") is not None, "a serves xDS")
    wait_until(lambda: b.controller.ads.snapshot("default/llmgw") is not None, "b serves xDS")
    assert [c.controller.leader for c in (a, b)].count(True) == 1
    follower = a if not a.controller.leader else b
    assert follower.controller.status_writes == 0


def _policy(name: str, target: dict[str, str], secret: str, created: str) -> dict[str, Any]:
    return {
        "apiVersion": "llmgw.dev/v1alpha1",
        "kind": "AIPolicy",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {"targetRefs": [target], "traffic": {"apiKeyAuthentication": {"secretRef": {"name": secret}}}},
    }


GATEWAY_TARGET = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "llmgw"}


def test_policy_status_keys_secret_followed_and_revocation_reaches_the_extproc(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """AIPolicy is watched; its API key Secret is cached by reference; status says Accepted, Conflicted,
    TargetNotFound per Gateway ancestor; a revoked key leaves the Gateway's extproc config."""
    apply_all(apiserver, m.quickstart())
    keys = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "default"}}
    apiserver.apply({**keys, "stringData": {"alice": "sk-alice", "bob": "sk-bob"}})
    apiserver.apply(_policy("keys", GATEWAY_TARGET, "keys", "2026-01-01T00:00:00Z"))
    apiserver.apply(_policy("younger", GATEWAY_TARGET, "keys", "2026-02-01T00:00:00Z"))
    missing = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "nope"}
    apiserver.apply(_policy("lost", missing, "keys", "2026-01-01T00:00:00Z"))
    ctl = run_controller()

    def accepted(name: str) -> Any:
        return status_of(apiserver, "AIPolicy", name, "Accepted", "ancestors", 0)

    wait_until(lambda: accepted("keys") == ("True", "Accepted"), "policy Accepted")
    wait_until(lambda: accepted("younger") == ("False", "Conflicted"), "the younger policy Conflicted")
    wait_until(lambda: accepted("lost") == ("False", "TargetNotFound"), "TargetNotFound")
    policy = apiserver.get("AIPolicy", "keys")
    assert policy is not None
    assert policy["status"]["ancestors"][0]["ancestorRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "default",
        "name": "llmgw",
    }

    def key_ids() -> set[str]:
        plan = ctl.controller.plan
        gp = plan.gateways.get("default/llmgw") if plan else None
        if gp is None:
            return set()
        return {k.key_id for a in gp.extproc.authn.values() if a.api_key for k in a.api_key.keys}

    wait_until(lambda: key_ids() == {"default/keys/alice", "default/keys/bob"}, "both keys in the extproc config")
    assert "sk-alice" not in repr(ctl.controller.plan)
    apiserver.apply({**keys, "stringData": {"alice": "sk-alice"}})  # bob is revoked
    wait_until(lambda: key_ids() == {"default/keys/alice"}, "the revoked key gone")


def test_api_keys_selected_by_label_are_cached_and_followed(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """agentgateway's configMapSelector (keyHash entries) and secretSelector in Kubernetes mode."""
    apply_all(apiserver, m.quickstart())
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    apiserver.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hashed", "namespace": "default", "labels": {"llmgw.dev/keys": "team-a"}},
            "data": {"dave": json.dumps({"keyHash": f"sha256:{digest}", "metadata": {"user": "dave"}})},
        }
    )
    apiserver.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "unrelated", "namespace": "default", "labels": {"llmgw.dev/keys": "team-b"}},
            "data": {"x": "y"},
        }
    )
    policy = _policy("hashed", GATEWAY_TARGET, "unused", "2026-01-01T00:00:00Z")
    policy["spec"]["traffic"]["apiKeyAuthentication"] = {
        "configMapSelector": {"matchLabels": {"llmgw.dev/keys": "team-a"}}
    }
    apiserver.apply(policy)
    ctl = run_controller()

    def key_ids() -> set[str]:
        plan = ctl.controller.plan
        gp = plan.gateways.get("default/llmgw") if plan else None
        return {k.key_id for a in gp.extproc.authn.values() if a.api_key for k in a.api_key.keys} if gp else set()

    wait_until(lambda: key_ids() == {"default/hashed/dave"}, "the selected ConfigMap's key")
    assert [o["metadata"]["name"] for o in ctl.controller.informers["ConfigMap"].items()] == ["hashed"]
    apiserver.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "more", "namespace": "default", "labels": {"llmgw.dev/keys": "team-a"}},
            "data": {"erin": json.dumps({"keyHash": "sha256:" + "0" * 64})},
        }
    )
    wait_until(lambda: key_ids() == {"default/hashed/dave", "default/more/erin"}, "a new ConfigMap by watch")


def test_config_channel_needs_the_gateways_own_client_certificate(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """Keys cross the network only under mutual TLS, and only to the Gateway the certificate names."""
    apply_all(apiserver, m.quickstart())
    apply_all(apiserver, [m.gateway("other", port=81), m.route("r2", gateway="other", backend="b2"), m.aibackend("b2")])
    ctl = run_controller()
    wait_until(lambda: apiserver.get("Secret", "other-llmgw-xds") is not None, "the client Secrets issued")
    port = ctl.controller.xds_port
    ca = apiserver.get("Secret", "llmgw-xds-ca", "llmgw-system")
    assert ca is not None and "ca.key" in secret_files(ca)

    async def attempt(worker: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
        channel = (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            if creds is None
            else grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)
        )
        async with channel:
            method = channel.unary_stream(METHOD, request_serializer=None, response_deserializer=None)
            call = method(worker.encode(), timeout=10)
            try:
                async for _ in call:
                    return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            finally:
                call.cancel()
                await settle()
        return grpc.StatusCode.UNKNOWN

    other = client_credentials(apiserver, "default/other")
    mine = client_credentials(apiserver, "default/llmgw")
    assert asyncio.run(attempt("extproc-0@default/llmgw", None)) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert asyncio.run(attempt("extproc-0@default/llmgw", other)) == grpc.StatusCode.PERMISSION_DENIED
    assert asyncio.run(attempt("extproc-0@default/llmgw", mine)) == grpc.StatusCode.OK


def _tls_secret(name: str, leaf: Any) -> dict[str, Any]:
    """A kubernetes.io/tls Secret as the API server returns it (data base64-encoded)."""
    import base64

    crt, key = leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def test_https_listener_certificate_from_a_secret_and_its_rotation(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    """A missing Secret is the listener's ResolvedRefs InvalidCertificateRef; once it exists the Gateway's
    snapshot carries it as an SDS secret (never in the listener), and a renewed Secret replaces it."""
    import trustme

    ca = trustme.CA()
    https = {"name": "https", "protocol": "HTTPS", "port": 443, "tls": {"certificateRefs": [{"name": "gw-tls"}]}}
    objs = m.quickstart()
    objs[1]["spec"]["listeners"].append(https)  # the quickstart's Gateway
    apply_all(apiserver, objs)
    ctl = run_controller()
    wait_until(
        lambda: (
            status_of(apiserver, "Gateway", "llmgw", "ResolvedRefs", "listeners", 1)
            == ("False", "InvalidCertificateRef")
        ),
        "the missing certificate reported on the listener",
    )
    assert status_of(apiserver, "Gateway", "llmgw", "ResolvedRefs", "listeners", 0) == ("True", "ResolvedRefs")

    def sds(name: str = "llmgw-tls/default/gw-tls") -> Any:
        snap = ctl.controller.ads.snapshot("default/llmgw")
        packed = (
            snap.types.get(names.TYPE_SECRET).by_name.get(name) if snap and names.TYPE_SECRET in snap.types else None
        )
        return packed.value if packed is not None else None

    first = ca.issue_cert("gw.example.test")
    apiserver.apply(_tls_secret("gw-tls", first))
    wait_until(
        lambda: status_of(apiserver, "Gateway", "llmgw", "ResolvedRefs", "listeners", 1) == ("True", "ResolvedRefs"),
        "the certificate resolved",
    )
    wait_until(lambda: sds() is not None and first.private_key_pem.bytes() in sds(), "the SDS secret served")
    listeners = ctl.controller.ads.snapshot("default/llmgw").types[names.TYPE_LISTENER].by_name
    assert all(b"PRIVATE KEY" not in packed.value for packed in listeners.values())
    renewed = ca.issue_cert("gw.example.test")
    apiserver.apply(_tls_secret("gw-tls", renewed))
    wait_until(lambda: renewed.private_key_pem.bytes() in (sds() or b""), "the renewed certificate pushed")
