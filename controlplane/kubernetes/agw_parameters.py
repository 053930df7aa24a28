"""agentgateway's `AgentgatewayParameters`, applied by the controller to the data plane it provisions.

agentgateway users shape the proxy pods with it (the AKS tutorial adds the
workload-identity label `azure.workload.identity/use: "true"` to the pod
template through `deployment.spec.template.metadata.labels`). llmgw applies
its Kubernetes resource overlays, `deployment`, `service` and `serviceAccount`
(`metadata.labels`/`annotations` and a `spec` patch), after its own
GatewayParameters, in agentgateway's order: the GatewayClass's parameters,
then the Gateway's. The patch follows strategic merge patch for the lists that
matter here: lists of objects with a `name` (containers, env, volumes, ports)
merge by name, `null` deletes a key, other lists are replaced.

Every other field configures agentgateway's own proxy binary (image, env,
logging, rawConfig, SPIFFE, Istio, ...) or objects llmgw does not create
(DaemonSet, PodDisruptionBudget, HorizontalPodAutoscaler): each is reported as
not supported by llmgw, naming the object and field, never applied silently.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from controlplane.kubernetes.provision import AGW_GROUP as GROUP
from controlplane.kubernetes.provision import AGW_PARAMS_KIND as KIND
from controlplane.kubernetes.provision import with_hash
from controlplane.resources import Problem, Resource

# overlay field -> the kind of the object it patches
OVERLAYS = {"deployment": "Deployment", "service": "Service", "serviceAccount": "ServiceAccount"}
_OVERLAY_FIELDS = {"metadata", "spec"}
_METADATA_FIELDS = {"labels", "annotations"}


def is_ref(ref: Any) -> bool:
    """Whether a parametersRef names an AgentgatewayParameters."""
    return isinstance(ref, Mapping) and ref.get("group") == GROUP and ref.get("kind") == KIND


def problems(params: Resource) -> list[Problem]:
    """A problem for every field of the object llmgw does not apply."""
    out: list[Problem] = []

    def unsupported(fld: str) -> None:
        out.append(Problem(params.file, params.ref, fld, "is not supported by llmgw", "Unsupported"))

    for key, value in params.spec.items():
        if key not in OVERLAYS:
            unsupported(f"spec.{key}")
            continue
        if not isinstance(value, Mapping):
            out.append(Problem(params.file, params.ref, f"spec.{key}", "must be a mapping (metadata, spec)"))
            continue
        for sub, inner in value.items():
            if sub not in _OVERLAY_FIELDS:
                unsupported(f"spec.{key}.{sub}")
            elif sub == "metadata" and isinstance(inner, Mapping):
                out.extend(
                    Problem(
                        params.file, params.ref, f"spec.{key}.metadata.{m}", "is not supported by llmgw", "Unsupported"
                    )
                    for m in inner
                    if m not in _METADATA_FIELDS
                )
    return out


def overlays_for(
    gateway: Resource, gatewayclass: Resource | None, params: Mapping[str, Resource]
) -> tuple[list[Mapping[str, Any]], str]:
    """The AgentgatewayParameters specs that apply to a Gateway (class first), and a problem if a ref is broken."""
    refs: list[tuple[Any, str | None, str]] = []
    if gatewayclass is not None:
        refs.append((gatewayclass.spec.get("parametersRef"), None, "GatewayClass parametersRef"))
    infra = gateway.spec.get("infrastructure")
    refs.append(
        (
            infra.get("parametersRef") if isinstance(infra, Mapping) else None,
            gateway.namespace,
            "infrastructure.parametersRef",
        )
    )
    out: list[Mapping[str, Any]] = []
    for ref, default_ns, where in refs:
        if not is_ref(ref):
            continue
        ns = default_ns or ref.get("namespace")
        if not isinstance(ns, str) or not ns or not isinstance(ref.get("name"), str):
            return [], f"{where} needs a name and a namespace ({KIND} is namespaced)"
        found = params.get(f"{ns}/{ref['name']}")
        if found is None:
            return [], f"{KIND} {ns}/{ref['name']} not found"
        out.append(found.spec)
    return out, ""


def apply_overlays(objects: list[dict[str, Any]], overlays: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The provisioned objects with each overlay applied in order (hashes recomputed)."""
    if not overlays:
        return objects
    out = []
    for obj in objects:
        patched = copy.deepcopy(obj)
        for spec in overlays:
            for field_name, kind in OVERLAYS.items():
                overlay = spec.get(field_name)
                if kind != obj.get("kind") or not isinstance(overlay, Mapping):
                    continue
                meta = overlay.get("metadata")
                if isinstance(meta, Mapping):
                    for m in _METADATA_FIELDS:
                        if isinstance(meta.get(m), Mapping):
                            target = patched["metadata"].setdefault(m, {})
                            target.update({str(k): str(v) for k, v in meta[m].items()})
                if isinstance(overlay.get("spec"), Mapping):
                    patched["spec"] = merge(patched.get("spec") or {}, overlay["spec"])
        out.append(with_hash(patched))
    return out


def merge(base: Any, patch: Any) -> Any:
    """Strategic-merge-patch style: maps merge (null deletes), named-object lists merge by name."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(out.get(key), value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items)
