"""A Gateway (+ GatewayParameters) -> Deployment, Service and ServiceAccount of its data plane; pure functions.

Every Gateway of our class gets its own data plane in its own namespace, named
after the Gateway and owner-referenced to it, so `kubectl delete gateway`
removes it (the garbage collector follows the ownerReferences). A pod runs two
containers sharing an emptyDir: Envoy, whose bootstrap (rendered here, passed
inline) points ADS at the controller's Service over TCP with `node.cluster` set
to the Gateway's "<ns>/<name>" so the controller serves it that Gateway's
snapshot; and the extproc sidecar (`python -m controlplane.kubernetes.dataplane`),
which runs the extproc workers on Unix sockets in the emptyDir, fetches their
config (credentials included) from the controller's config channel, and serves
metrics on :15020 and readiness on :15021. Credentials never enter Envoy config.

Listener ports below 1024 are served on port+10000 inside the pod (Envoy runs
as non-root without NET_BIND_SERVICE); the Service maps the listener port to it.
`spec_hash` lets the controller compare desired with live objects without
tripping over fields the API server defaults.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from controlplane import bootstrap
from controlplane.envoy_admin import DRAIN_TIMEOUT_S
from controlplane.kubernetes import xds_tls
from controlplane.kubernetes.status import DataPlane
from controlplane.resources import Resource

GROUP = "llmgw.dev"
PARAMS_KIND = "GatewayParameters"
# agentgateway's parameters kind, also accepted in parametersRef (controlplane/kubernetes/agw_parameters.py)
AGW_GROUP = "agentgateway.dev"
AGW_PARAMS_KIND = "AgentgatewayParameters"
HASH_ANNOTATION = "llmgw.dev/spec-hash"
GATEWAY_LABEL = "gateway.networking.k8s.io/gateway-name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "llmgw"}
SOCKET_DIR = "/var/run/llmgw"
PRIVILEGED_PORT_OFFSET = 10000
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "envoy": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "extproc": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
}


@dataclass(frozen=True)
class Settings:
    """Controller-wide provisioning settings (from the `llmgw controller` command line)."""

    image: str
    xds_host: str  # the controller's Service, e.g. llmgw-controller.llmgw-system.svc.cluster.local
    xds_port: int = 18000
    xds_tls: bool = True  # mutual TLS to the controller (xds_tls.py); off only for a trusted network
    admin_port: int = 15000
    metrics_port: int = 15020
    ready_port: int = 15021


def container_port(port: int) -> int:
    """Where Envoy listens inside the pod for a Gateway listener port."""
    return port + PRIVILEGED_PORT_OFFSET if port < 1024 else port


def listener_ports(gateway: Resource) -> list[int]:
    """The distinct, valid listener ports of a Gateway, in order."""
    out: list[int] = []
    listeners = gateway.spec.get("listeners")
    for lst in listeners if isinstance(listeners, list) else []:
        port = lst.get("port") if isinstance(lst, Mapping) else None
        if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535 and port not in out:
            out.append(port)
    return out


def parameters_for(
    gateway: Resource, gatewayclass: Resource | None, params: Mapping[str, Resource]
) -> tuple[dict[str, Any], str]:
    """The merged GatewayParameters spec (class defaults, then the Gateway's own) and a problem, if any.

    `params` holds GatewayParameters by "<ns>/<name>". A reference that is not
    to a GatewayParameters, or to one that does not exist, is a problem (the
    Gateway is then not accepted: InvalidParameters).
    """
    merged: dict[str, Any] = {}
    if gatewayclass is not None:
        ref = gatewayclass.spec.get("parametersRef")
        if ref is not None:
            spec, problem = _lookup(ref, default_ns=None, params=params, where="GatewayClass parametersRef")
            if problem:
                return {}, problem
            merged = _merge(merged, spec)
    infra = gateway.spec.get("infrastructure")
    ref = infra.get("parametersRef") if isinstance(infra, Mapping) else None
    if ref is not None:
        spec, problem = _lookup(ref, default_ns=gateway.namespace, params=params, where="infrastructure.parametersRef")
        if problem:
            return {}, problem
        merged = _merge(merged, spec)
    return merged, ""


def class_parameters_problem(gatewayclass: Resource, params: Mapping[str, Resource]) -> str:
    ref = gatewayclass.spec.get("parametersRef")
    if ref is None:
        return ""
    return _lookup(ref, default_ns=None, params=params, where="parametersRef")[1]


def _lookup(
    ref: Any, *, default_ns: str | None, params: Mapping[str, Resource], where: str
) -> tuple[Mapping[str, Any], str]:
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return {}, f"{where} needs a name"
    if ref.get("group") == AGW_GROUP and ref.get("kind") == AGW_PARAMS_KIND:
        return {}, ""  # agentgateway's kind: applied as overlays (agw_parameters.py)
    if ref.get("group") != GROUP or ref.get("kind") != PARAMS_KIND:
        return {}, (
            f"{where} must reference {GROUP}/{PARAMS_KIND} or {AGW_GROUP}/{AGW_PARAMS_KIND}, "
            f"not {ref.get('group')}/{ref.get('kind')}"
        )
    ns = default_ns or ref.get("namespace")
    if not isinstance(ns, str) or not ns:
        return {}, f"{where} needs a namespace (GatewayParameters is namespaced)"
    found = params.get(f"{ns}/{ref['name']}")
    if found is None:
        return {}, f"{PARAMS_KIND} {ns}/{ref['name']} not found"
    return found.spec, ""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _strings(node: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in node.items()} if isinstance(node, Mapping) else {}


def _get(spec: Mapping[str, Any], *path: str) -> Any:
    node: Any = spec
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def limits_env(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GatewayParameters `extproc.limits` -> the extproc's store environment (extproc/store):
    replicas given one Redis URL (from a Secret: it may hold a password) share their limits."""
    env: list[dict[str, Any]] = []
    ref = _get(spec, "extproc", "limits", "storeSecretRef")
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
        key = ref.get("key") if isinstance(ref.get("key"), str) else "url"
        env.append({"name": "LLMGW_STORE", "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": key}}})
    mode = _get(spec, "extproc", "limits", "failureMode")
    if mode in ("FailOpen", "FailClosed"):
        env.append({"name": "LLMGW_STORE_FAILURE_MODE", "value": mode})
    return env


def selector_labels(gateway: Resource) -> dict[str, str]:
    return {"app.kubernetes.io/name": "llmgw-gateway", GATEWAY_LABEL: gateway.name}


def render_bootstrap(gateway: Resource, *, settings: Settings, workers: int) -> str:
    """The Envoy bootstrap of this Gateway's pods, as compact JSON (it goes on the command line)."""
    text = bootstrap.render(
        node_id="llmgw-dataplane",  # replaced by the pod name (--service-node)
        node_cluster=gateway.key,
        admin_port=settings.admin_port,
        xds_address=(settings.xds_host, settings.xds_port),
        extproc_sockets=[f"{SOCKET_DIR}/extproc-{i}.sock" for i in range(workers)],
    )
    boot = yaml.safe_load(text)
    if settings.xds_tls:
        for cluster in boot["static_resources"]["clusters"]:
            if cluster["name"] == "llmgw_xds":
                cluster["transport_socket"] = _xds_transport_socket(settings)
    return json.dumps(boot, separators=(",", ":"), sort_keys=True)


def _xds_transport_socket(settings: Settings) -> dict[str, Any]:
    """Envoy's side of the mutual TLS to the controller: the Gateway's certificate, the controller's CA."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": settings.xds_host,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": f"{xds_tls.MOUNT}/{xds_tls.CERT_FILE}"},
                        "private_key": {"filename": f"{xds_tls.MOUNT}/{xds_tls.KEY_FILE}"},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": f"{xds_tls.MOUNT}/{xds_tls.CA_FILE}"},
                    "match_typed_subject_alt_names": [
                        {"san_type": _san_type(settings.xds_host), "matcher": {"exact": settings.xds_host}}
                    ],
                },
            },
        },
    }


def _san_type(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "DNS"
    return "IP_ADDRESS"


def client_secret(gateway: Resource, data: Mapping[str, str]) -> dict[str, Any]:
    """The Gateway's xds client certificate Secret (xds_tls.py), owned by the Gateway."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": xds_tls.client_secret_name(gateway.name),
            "namespace": gateway.namespace,
            "labels": {**MANAGED_BY, GATEWAY_LABEL: gateway.name},
            "ownerReferences": [_owner(gateway)],
        },
        "type": "Opaque",
        "stringData": dict(data),
    }


def _owner(gateway: Resource) -> dict[str, Any]:
    uid = _get(gateway.body, "metadata", "uid")
    return {
        "apiVersion": gateway.api_version,
        "kind": "Gateway",
        "name": gateway.name,
        "uid": uid if isinstance(uid, str) else "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def desired_objects(gateway: Resource, *, spec: Mapping[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """ServiceAccount, Service and Deployment for one Gateway, each carrying its spec hash."""
    owner = _owner(gateway)
    infra = gateway.spec.get("infrastructure")
    infra_labels = _strings(infra.get("labels")) if isinstance(infra, Mapping) else {}
    infra_annotations = _strings(infra.get("annotations")) if isinstance(infra, Mapping) else {}
    labels = {**infra_labels, **MANAGED_BY, **selector_labels(gateway)}

    def meta(annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": gateway.name,
            "namespace": gateway.namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(owner)],
        }
        merged = {**infra_annotations, **(annotations or {})}
        if merged:
            out["annotations"] = merged
        return out

    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(_strings(_get(spec, "serviceAccount", "annotations"))),
        "automountServiceAccountToken": False,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(_strings(_get(spec, "service", "annotations"))),
        "spec": {
            "type": _get(spec, "service", "type") or "LoadBalancer",
            "selector": selector_labels(gateway),
            "ports": [
                {"name": f"http-{port}", "port": port, "targetPort": container_port(port), "protocol": "TCP"}
                for port in listener_ports(gateway)
            ],
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(),
        "spec": {
            "replicas": _get(spec, "replicas") if isinstance(_get(spec, "replicas"), int) else 1,
            "selector": {"matchLabels": selector_labels(gateway)},
            "template": _pod_template(gateway, spec=spec, settings=settings, labels=labels),
        },
    }
    return [with_hash(obj) for obj in (service_account, service, deployment)]


def _pod_template(
    gateway: Resource, *, spec: Mapping[str, Any], settings: Settings, labels: Mapping[str, str]
) -> dict[str, Any]:
    image = _get(spec, "image") or settings.image
    pull = _get(spec, "imagePullPolicy")
    workers = _get(spec, "extproc", "workers")
    workers = workers if isinstance(workers, int) and workers > 0 else 1

    def restricted() -> dict[str, Any]:
        return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}

    def volume_mounts() -> list[dict[str, Any]]:
        mounts: list[dict[str, Any]] = [{"name": "run", "mountPath": SOCKET_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
        if settings.xds_tls:
            mounts.append({"name": "xds-tls", "mountPath": xds_tls.MOUNT, "readOnly": True})
        return mounts

    def resources(container: str) -> Any:
        return copy.deepcopy(_get(spec, container, "resources") or DEFAULT_RESOURCES[container])

    envoy: dict[str, Any] = {
        "name": "envoy",
        "image": image,
        "command": ["envoy"],
        "args": [
            "--config-yaml",
            render_bootstrap(gateway, settings=settings, workers=workers),
            "--service-node",
            "$(POD_NAME)",
            "--disable-hot-restart",
            "--drain-time-s",
            "5",
            "--drain-strategy",
            "immediate",
            "-l",
            str(_get(spec, "envoy", "logLevel") or "warning"),
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": f"l-{container_port(p)}", "containerPort": container_port(p), "protocol": "TCP"}
            for p in listener_ports(gateway)
        ],
        # Envoy exits at once on SIGTERM: drain first (Kubernetes waits for the hook, then signals).
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": [
                        "python",
                        "-m",
                        "controlplane.envoy_admin",
                        "drain",
                        "--admin-port",
                        str(settings.admin_port),
                        "--timeout",
                        f"{DRAIN_TIMEOUT_S:g}",
                    ]
                }
            }
        },
        "resources": resources("envoy"),
        "securityContext": restricted(),
        "volumeMounts": volume_mounts(),
    }
    extproc: dict[str, Any] = {
        "name": "extproc",
        "image": image,
        "command": ["python", "-m", "controlplane.kubernetes.dataplane"],
        "args": [
            "--gateway",
            gateway.key,
            "--config",
            f"{settings.xds_host}:{settings.xds_port}",
            "--workers",
            str(workers),
            "--socket-dir",
            SOCKET_DIR,
            "--admin-port",
            str(settings.admin_port),
            "--metrics-port",
            str(settings.metrics_port),
            "--ready-port",
            str(settings.ready_port),
            *(["--config-tls-dir", xds_tls.MOUNT] if settings.xds_tls else []),
        ],
        "ports": [
            {"name": "metrics", "containerPort": settings.metrics_port, "protocol": "TCP"},
            {"name": "ready", "containerPort": settings.ready_port, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": settings.ready_port},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "resources": resources("extproc"),
        "securityContext": restricted(),
        "volumeMounts": volume_mounts(),
    }
    store_env = limits_env(spec)
    if store_env:
        extproc["env"] = store_env
    if pull:
        envoy["imagePullPolicy"] = extproc["imagePullPolicy"] = pull
    pod_labels = {**_strings(_get(spec, "pod", "labels")), **labels}
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(settings.metrics_port),
        "prometheus.io/path": "/metrics",
        **_strings(_get(spec, "pod", "annotations")),
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": gateway.name,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [envoy, extproc],
        "volumes": [
            {"name": "run", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            *(
                [{"name": "xds-tls", "secret": {"secretName": xds_tls.client_secret_name(gateway.name)}}]
                if settings.xds_tls
                else []
            ),
        ],
    }
    if _strings(_get(spec, "pod", "nodeSelector")):
        pod_spec["nodeSelector"] = _strings(_get(spec, "pod", "nodeSelector"))
    tolerations = _get(spec, "pod", "tolerations")
    if isinstance(tolerations, list) and tolerations:
        pod_spec["tolerations"] = copy.deepcopy(tolerations)
    secrets = _get(spec, "imagePullSecrets")
    if isinstance(secrets, list) and secrets:
        pod_spec["imagePullSecrets"] = [{"name": s["name"]} for s in secrets if isinstance(s, Mapping)]
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec}


def spec_hash(obj: Mapping[str, Any]) -> str:
    """Hash of everything we set on an object except the hash annotation itself."""
    clean = copy.deepcopy(dict(obj))
    annotations = clean.get("metadata", {}).get("annotations", {})
    annotations.pop(HASH_ANNOTATION, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = spec_hash(obj)
    return obj


def owned_by(live: Mapping[str, Any], gateway: Resource) -> bool:
    """Whether a live object is controlled by this Gateway (so we may change it)."""
    uid = _get(gateway.body, "metadata", "uid")
    refs = _get(live, "metadata", "ownerReferences")
    return isinstance(refs, list) and any(
        isinstance(r, Mapping) and r.get("uid") == uid and r.get("controller") for r in refs
    )


def needs_update(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return _get(live, "metadata", "annotations", HASH_ANNOTATION) != _get(
        desired, "metadata", "annotations", HASH_ANNOTATION
    )


def for_update(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired object made safe to PUT over `live`: its resourceVersion (optimistic
    concurrency) and the fields the API server allocated (Service cluster IPs and node ports)."""
    out = copy.deepcopy(dict(desired))
    out["metadata"]["resourceVersion"] = _get(live, "metadata", "resourceVersion")
    if desired.get("kind") == "Service":
        live_spec = live.get("spec") if isinstance(live.get("spec"), Mapping) else {}
        assert isinstance(live_spec, Mapping)
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in live_spec:
                out["spec"][key] = copy.deepcopy(live_spec[key])
        if out["spec"].get("type") != "ClusterIP":
            node_ports = {
                p.get("port"): p.get("nodePort") for p in live_spec.get("ports") or [] if isinstance(p, Mapping)
            }
            for port in out["spec"]["ports"]:
                if node_ports.get(port["port"]):
                    port["nodePort"] = node_ports[port["port"]]
    return out


def observe(deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None, *, error: str = "") -> DataPlane:
    """What the live Deployment and Service say about the data plane (for Gateway status)."""
    if error:
        return DataPlane(error=error)
    replicas = _get(deployment, "spec", "replicas") if deployment else None
    available = _get(deployment, "status", "availableReplicas") if deployment else None
    addresses: list[tuple[str, str]] = []
    pending = False
    if service is not None:
        if _get(service, "spec", "type") == "LoadBalancer":
            for ingress in _get(service, "status", "loadBalancer", "ingress") or []:
                if isinstance(ingress, Mapping) and ingress.get("ip"):
                    addresses.append(("IPAddress", str(ingress["ip"])))
                elif isinstance(ingress, Mapping) and ingress.get("hostname"):
                    addresses.append(("Hostname", str(ingress["hostname"])))
            pending = not addresses
        else:
            ip = _get(service, "spec", "clusterIP")
            if isinstance(ip, str) and ip and ip != "None":
                addresses.append(("IPAddress", ip))
    return DataPlane(
        replicas=replicas if isinstance(replicas, int) else 1,
        available_replicas=available if isinstance(available, int) else 0,
        addresses=tuple(addresses),
        address_pending=pending,
    )
