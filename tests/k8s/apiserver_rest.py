"""REST shapes of the in-process API server: the kinds it serves, URL paths, selectors, patches, errors.

Split from `apiserver.py` (the state and the HTTP front end) to keep both small.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has the status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


GW = "gateway.networking.k8s.io"
KINDS = [
    Kind(GW, "v1", "gatewayclasses", "GatewayClass", namespaced=False, status=True),
    Kind(GW, "v1", "gateways", "Gateway", status=True),
    Kind(GW, "v1", "httproutes", "HTTPRoute", status=True),
    Kind(GW, "v1beta1", "referencegrants", "ReferenceGrant"),
    Kind("llmgw.dev", "v1alpha1", "aibackends", "AIBackend", status=True),
    Kind("llmgw.dev", "v1alpha1", "gatewayparameters", "GatewayParameters"),
    Kind("inference.networking.k8s.io", "v1", "inferencepools", "InferencePool", status=True),
    Kind("inference.networking.x-k8s.io", "v1alpha2", "inferenceobjectives", "InferenceObjective", status=True),
    Kind("", "v1", "pods", "Pod", status=True),
    Kind("agentgateway.dev", "v1alpha1", "agentgatewaybackends", "AgentgatewayBackend", status=True),
    Kind("agentgateway.dev", "v1alpha1", "agentgatewayparameters", "AgentgatewayParameters"),
    Kind("llmgw.dev", "v1alpha1", "aipolicies", "AIPolicy", status=True),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
    Kind("", "v1", "services", "Service", status=True),
    Kind("", "v1", "serviceaccounts", "ServiceAccount"),
    Kind("apps", "v1", "deployments", "Deployment", status=True),
    Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
]
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def true(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (the Python client sends "True")."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def spec_of(obj: Obj) -> Obj:
    return {key: v for key, v in obj.items() if key not in ("metadata", "status")}


def route(path: str) -> tuple[Kind, str | None, str | None, str | None]:
    """URL path -> (kind, namespace or None for all, name, subresource)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    ns: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] != "status":
        ns, rest = rest[1], rest[2:]
    k = BY_PATH.get((group, version, rest[0])) if rest else None
    if k is None or len(rest) > 3:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub not in (None, "status") or (sub == "status" and not k.status):
        raise ApiError(404, "NotFound", f"no subresource {sub} on {k.plural}")
    if k.namespaced and ns is None and name is not None:
        raise ApiError(404, "NotFound", f"{k.plural} is namespaced ({path})")
    return k, ns if k.namespaced else None, name, sub


def selector(query: dict[str, str]) -> Any:
    labels = [s.strip() for s in query.get("labelSelector", "").split(",") if s.strip()]
    fields = [s.strip() for s in query.get("fieldSelector", "").split(",") if s.strip()]

    def ok(obj: Obj) -> bool:
        have = obj.get("metadata", {}).get("labels") or {}
        for term in labels:
            if "!=" in term:
                key, value = term.split("!=", 1)
                if have.get(key) == value:
                    return False
            elif "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                if have.get(key) != value:
                    return False
            elif term.startswith("!"):
                if term[1:] in have:
                    return False
            elif term not in have:
                return False
        for term in fields:
            key, value = term.replace("==", "=").split("=", 1)
            node: Any = obj
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if str(node) != value:
                return False
        return True

    return ok


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def patch(obj: Obj, patch: Any, content_type: str) -> Obj:
    if "json-patch" in content_type:
        for op in patch:
            parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            parent: Any = obj
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
            last = parts[-1]
            if op["op"] in ("add", "replace"):
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            elif op["op"] == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']}")
        return obj
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a merge patch must be an object")
    merged = merge_patch(obj, patch)
    assert isinstance(merged, dict)
    return merged
