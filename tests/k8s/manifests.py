"""Kubernetes objects the provider tests apply: the quickstart, seed style (Gateway, HTTPRoute, AIBackend, Secret)."""

from __future__ import annotations

import base64
from typing import Any

Obj = dict[str, Any]
GW_API = "gateway.networking.k8s.io/v1"


def gatewayclass(name: str = "llmgw", controller: str = "llmgw.dev/gateway-controller") -> Obj:
    return {
        "apiVersion": GW_API,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def gateway(name: str = "llmgw", *, port: int = 80, ns: str = "default", cls: str = "llmgw", **spec: Any) -> Obj:
    return {
        "apiVersion": GW_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": cls, "listeners": [{"name": "http", "protocol": "HTTP", "port": port}], **spec},
    }


def route(
    name: str = "openai", *, gateway: str = "llmgw", backend: str = "openai", prefix: str = "/v1", ns: str = "default"
) -> Obj:
    return {
        "apiVersion": GW_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "backendRefs": [{"group": "llmgw.dev", "kind": "AIBackend", "name": backend}],
                }
            ],
        },
    }


def aibackend(
    name: str = "openai",
    *,
    secret: str = "openai-key",
    host: str | None = None,
    port: int | None = None,
    ns: str = "default",
) -> Obj:
    provider: Obj = {"openai": {}}
    if host:
        provider["host"] = host
    if port:
        provider["port"] = port
    return {
        "apiVersion": "llmgw.dev/v1alpha1",
        "kind": "AIBackend",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ai": {"provider": provider}, "policies": {"auth": {"secretRef": {"name": secret}}}},
    }


def secret(name: str = "openai-key", key: str = "sk-one", *, ns: str = "default", field: str = "Authorization") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "data": {field: base64.b64encode(key.encode()).decode()},
    }


def quickstart(**backend: Any) -> list[Obj]:
    return [gatewayclass(), gateway(), route(), aibackend(**backend), secret()]


def condition(obj: Obj | None, ctype: str, *path: str | int) -> tuple[str, str] | None:
    node: Any = (obj or {}).get("status")
    for p in path:
        if isinstance(p, int):
            node = node[p] if isinstance(node, list) and len(node) > p else None
        else:
            node = node.get(p) if isinstance(node, dict) else None
    for c in (node or {}).get("conditions", []) if isinstance(node, dict) else []:
        if c["type"] == ctype:
            return c["status"], c["reason"]
    return None
