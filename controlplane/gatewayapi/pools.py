"""InferencePool (Gateway API Inference Extension v1.6.0, `inference.networking.k8s.io/v1`) -> PoolIR.

A pool is a set of model-server pods (chosen by `selector.matchLabels`, only
ready ones with an IP) times its `targetPorts`, and an endpoint picker (EPP)
named by `endpointPickerRef` (a Service and a port). Both modes read the same
objects: the Kubernetes controller gets the Pods and Services from the API
server; standalone mode reads them from the manifests, so a pool's pods are
written as `v1 Pod` objects with `metadata.labels` and `status.podIP` (see
docs/inference-pools.md). The EPP Service's address is its `spec.clusterIP`,
its `spec.externalName`, or (headless) its cluster DNS name.

Problems carry the GIE condition reasons: `InvalidExtensionRef` for a picker
reference that does not resolve (ResolvedRefs), `EndpointPickerRefMissing`
is a note (the pool still works: Envoy balances over its ready pods).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from controlplane.ir import EndpointPickerIR, PoolIR
from controlplane.resources import Problem, Resource

INFERENCE_GROUP = "inference.networking.k8s.io"
POOL_API_VERSION = f"{INFERENCE_GROUP}/v1"
POOL_KIND = "InferencePool"
REASON_INVALID_EXTENSION_REF = "InvalidExtensionRef"
REASON_PICKER_MISSING = "EndpointPickerRefMissing"
APP_PROTOCOL_HTTP = "http"
APP_PROTOCOL_H2C = "kubernetes.io/h2c"

_SPEC_FIELDS = {"selector", "targetPorts", "appProtocol", "endpointPickerRef"}
_SELECTOR_FIELDS = {"matchLabels"}
_PICKER_FIELDS = {"group", "kind", "name", "port", "failureMode"}
_FAILURE_MODES = ("FailOpen", "FailClose")
MAX_TARGET_PORTS = 8
OBJECTIVE_KINDS = {
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective"),
    ("llm-d.ai/v1alpha2", "InferenceObjective"),
}
ENGINE_LABEL = "inference.networking.k8s.io/engine-type"
ENGINES = ("vllm", "sglang", "tgi")


def is_pool(res: Resource) -> bool:
    return res.api_version == POOL_API_VERSION and res.kind == POOL_KIND


def is_objective(res: Resource) -> bool:
    return (res.api_version, res.kind) in OBJECTIVE_KINDS


def attach_objectives(
    pools: dict[str, PoolIR], objectives: Iterable[Resource]
) -> tuple[dict[str, PoolIR], list[Problem], list[Problem]]:
    """InferenceObjectives (`priority`, `poolRef`) onto their pools: (pools, problems, notes).

    llmgw's own picker acts on them (priority under saturation); a pool with an
    endpoint picker of its own has that picker read them, which is a note here.
    """
    problems: list[Problem] = []
    notes: list[Problem] = []
    found: dict[str, list[tuple[str, int]]] = {}
    for res in objectives:
        spec = res.spec
        for key in spec:
            if key not in ("priority", "poolRef"):
                problems.append(Problem(res.file, res.ref, f"spec.{key}", "is not supported by llmgw", "Unsupported"))
        priority = spec.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            problems.append(Problem(res.file, res.ref, "spec.priority", "must be an integer"))
            continue
        ref = spec.get("poolRef")
        name = ref.get("name") if isinstance(ref, Mapping) else None
        kind = ref.get("kind", POOL_KIND) if isinstance(ref, Mapping) else None
        if not isinstance(name, str) or kind != POOL_KIND:
            problems.append(Problem(res.file, res.ref, "spec.poolRef", "must name an InferencePool (name)"))
            continue
        key = f"{res.namespace}/{name}"
        pool = pools.get(key)
        if pool is None:
            problems.append(
                Problem(res.file, res.ref, "spec.poolRef", f"InferencePool {key} not found or invalid", "NotFound")
            )
            continue
        if pool.picker is not None:
            notes.append(
                Problem(
                    res.file,
                    res.ref,
                    "",
                    f"InferencePool {key} has its own endpoint picker, which reads this objective (llmgw does not)",
                    "Ignored",
                )
            )
        found.setdefault(key, []).append((res.name, priority))
    out = {k: replace(p, objectives=tuple(sorted(found.get(k, [])))) for k, p in pools.items()}
    return out, problems, notes


class _Ctx:
    def __init__(self, res: Resource) -> None:
        self.res = res
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []

    def fail(self, fld: str, message: str, reason: str = "Invalid") -> None:
        self.problems.append(Problem(self.res.file, self.res.ref, fld, message, reason))


def translate_pool(
    res: Resource, *, pods: Iterable[Resource], services: Mapping[str, Resource]
) -> tuple[PoolIR | None, list[Problem], list[Problem]]:
    """One InferencePool: (pool or None, problems, notes). `services` are keyed "<ns>/<name>"."""
    ctx = _Ctx(res)
    spec = res.spec
    for key in spec:
        if key not in _SPEC_FIELDS:
            ctx.fail(f"spec.{key}", "is not supported by llmgw", "Unsupported")
    labels = _selector(ctx, spec.get("selector"))
    ports = _target_ports(ctx, spec.get("targetPorts"))
    app = spec.get("appProtocol", APP_PROTOCOL_HTTP)
    if app not in (APP_PROTOCOL_HTTP, APP_PROTOCOL_H2C):
        ctx.fail("spec.appProtocol", f"must be {APP_PROTOCOL_HTTP!r} or {APP_PROTOCOL_H2C!r}, not {app!r}")
    picker = _picker(ctx, spec.get("endpointPickerRef"), services)
    if ctx.problems or labels is None or ports is None:
        return None, ctx.problems, ctx.notes
    members = _ready_pods(res.namespace, labels, pods)
    endpoints = sorted({(ip, port) for ip, _ in members for port in ports})
    engine = res.labels.get(ENGINE_LABEL) or next((e for _, e in members if e), None) or "vllm"
    if engine not in ENGINES:
        ctx.fail(f"metadata.labels.{ENGINE_LABEL}", f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
        return None, ctx.problems, ctx.notes
    pool = PoolIR(key=res.key, endpoints=tuple(endpoints), picker=picker, h2c=app == APP_PROTOCOL_H2C, engine=engine)
    return pool, [], ctx.notes


def _selector(ctx: _Ctx, selector: Any) -> dict[str, str] | None:
    if not isinstance(selector, Mapping):
        ctx.fail("spec.selector", "is required (matchLabels of the model-server pods)")
        return None
    for key in selector:
        if key not in _SELECTOR_FIELDS:
            ctx.fail(f"spec.selector.{key}", "is not supported by llmgw (InferencePool v1 selects by matchLabels)")
    labels = selector.get("matchLabels")
    if not isinstance(labels, Mapping) or not labels:
        ctx.fail("spec.selector.matchLabels", "must be a non-empty mapping of label -> value")
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        ctx.fail("spec.selector.matchLabels", "labels and values must be strings (quote numbers and booleans)")
        return None
    return dict(labels)


def _target_ports(ctx: _Ctx, ports: Any) -> list[int] | None:
    if not isinstance(ports, list) or not 1 <= len(ports) <= MAX_TARGET_PORTS:
        ctx.fail("spec.targetPorts", f"must be a list of 1-{MAX_TARGET_PORTS} ports ({{number: 8000}})")
        return None
    out: list[int] = []
    for i, port in enumerate(ports):
        number = port.get("number") if isinstance(port, Mapping) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            ctx.fail(f"spec.targetPorts[{i}].number", "must be a port number 1-65535")
            return None
        if number in out:
            ctx.fail(f"spec.targetPorts[{i}].number", f"port {number} is listed twice")
            return None
        out.append(number)
    return out


def _picker(ctx: _Ctx, ref: Any, services: Mapping[str, Resource]) -> EndpointPickerIR | None:
    fld = "spec.endpointPickerRef"
    if ref is None:
        ctx.notes.append(
            Problem(
                ctx.res.file,
                ctx.res.ref,
                fld,
                "no endpoint picker: Envoy balances requests over the pool's ready pods (least request)",
                REASON_PICKER_MISSING,
            )
        )
        return None
    if not isinstance(ref, Mapping):
        ctx.fail(fld, "must be a mapping (name, port, failureMode)")
        return None
    for key in ref:
        if key not in _PICKER_FIELDS:
            ctx.fail(f"{fld}.{key}", "is not supported by llmgw", "Unsupported")
    group, kind = ref.get("group", ""), ref.get("kind", "Service")
    if group not in ("", "core") or kind != "Service":
        ctx.fail(f"{fld}.kind", f"{group or 'core'}/{kind} pickers are not supported (a Service)", "InvalidKind")
        return None
    mode = ref.get("failureMode", "FailClose")
    if mode not in _FAILURE_MODES:
        ctx.fail(f"{fld}.failureMode", f"must be FailOpen or FailClose, not {mode!r}")
        return None
    port = ref.get("port")
    number = port.get("number") if isinstance(port, Mapping) else None
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        ctx.fail(f"{fld}.port.number", "is required for a Service (the EPP's gRPC port, e.g. 9002)")
        return None
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        ctx.fail(f"{fld}.name", "is required (the EPP's Service)")
        return None
    service = services.get(f"{ctx.res.namespace}/{name}")
    host = _service_host(service) if service is not None else None
    if host is None:
        ctx.fail(
            f"{fld}.name",
            f"Service {ctx.res.namespace}/{name} not found or has no address "
            "(spec.clusterIP or spec.externalName in standalone mode)",
            REASON_INVALID_EXTENSION_REF,
        )
        return None
    return EndpointPickerIR(host=host, port=number, fail_open=mode == "FailOpen")


def _service_host(service: Resource) -> str | None:
    spec = service.spec
    external = spec.get("externalName")
    if isinstance(external, str) and external:
        return external
    ip = spec.get("clusterIP")
    if isinstance(ip, str) and ip and ip != "None":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return None
        return ip
    if ip == "None":
        return f"{service.name}.{service.namespace}.svc.cluster.local"  # headless: the pods' DNS records
    return None


def _ready_pods(namespace: str, labels: Mapping[str, str], pods: Iterable[Resource]) -> list[tuple[str, str | None]]:
    """(IP, engine label) of the pods in `namespace` with every label, an IP, not terminating, Ready unless unknown."""
    out: list[tuple[str, str | None]] = []
    for pod in pods:
        if pod.namespace != namespace or any(pod.labels.get(k) != v for k, v in labels.items()):
            continue
        meta = pod.body.get("metadata")
        if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
            continue
        status = pod.body.get("status")
        if not isinstance(status, Mapping):
            continue
        ip = status.get("podIP")
        if not isinstance(ip, str):
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            continue
        conditions = status.get("conditions")
        if isinstance(conditions, list):
            ready = [c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"]
            if ready and ready[0].get("status") != "True":
                continue
        out.append((ip, pod.labels.get(ENGINE_LABEL)))
    return out
