"""Plain (non-AI) backends: agentgateway's `AgentgatewayBackend` with `spec.static`, and `Service` backendRefs.

Both become a `PlainBackendIR`: Envoy proxies their routes alone (no router
stage, no attempt stage), with upstream TLS from `policies.tls` and a static
credential from `policies.auth` (`key`, `secretRef`) that Envoy injects from an
SDS secret. agentgateway's tutorials pair an AI backend with one of these for
metadata calls such as `GET /v1/models`.

How a `Service` resolves (DESIGN: Kubernetes and standalone read the same
manifests): a Service object among the inputs of `type: ExternalName` sends
to its `externalName` (in standalone this is the documented way to point a
Service ref at any host); any other Service, or a Service that is not among
the inputs, is reached at its cluster DNS name `<name>.<namespace>.svc.cluster.local`
on the backendRef's port, which kube-proxy balances over its endpoints when the
gateway runs in the cluster. The Host header is kept, as for any Service. In
Kubernetes the controller resolves the refs against the Services it watches
(`complete`): a Service that does not exist is BackendNotFound in the route's
status, a port it does not have too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.gatewayapi.backends import check_policies, secret_auth, tls_policy
from controlplane.gatewayapi.provider_kinds import ProviderKind
from controlplane.gatewayapi.routes import ServiceRefError, parse_duration
from controlplane.ir import PlainBackendIR
from controlplane.resources import Problem, Resource

# The fields llmgw acts on in `spec.static` and in a plain backend's `spec.policies`.
_STATIC_FIELDS = {"host", "port"}
_PLAIN_POLICY_FIELDS = {"tls", "auth", "tcp", "http"}
# A plain backend's credential: agentgateway's default location, `Authorization: Bearer <key>`.
_PLAIN_AUTH = ProviderKind(host=lambda _s: None, port=80, tls=False)
# Credential kinds that need the extproc (tokens, signatures): not on a plain backend.
_EXTPROC_AUTH = ("aws", "gcp", "azure")
CLUSTER_DNS_SUFFIX = "svc.cluster.local"


def static_cluster(key: str) -> str:
    """The cluster of AgentgatewayBackend `<ns>/<name>` with `spec.static`."""
    return f"backend/{key}"


def service_cluster(namespace: str, name: str, port: int) -> str:
    return f"service/{namespace}/{name}/{port}"


def is_static_backend(res: Resource) -> bool:
    return res.kind == "AgentgatewayBackend" and "static" in res.spec


def translate_static(
    res: Resource,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    configmaps: Mapping[str, Mapping[str, str]],
) -> tuple[PlainBackendIR | None, list[Problem]]:
    """`spec.static: {host, port}` with `spec.policies` {tls, auth, tcp, http}."""
    problems: list[Problem] = []

    def fail(fld: str, message: str, reason: str = "Invalid") -> None:
        problems.append(Problem(res.file, res.ref, fld, message, reason))

    spec = res.spec
    for key in spec:
        if key not in ("static", "policies"):
            fail(f"spec.{key}", "cannot be set together with spec.static (one backend type per object)")
    static = spec.get("static")
    if not isinstance(static, Mapping):
        fail("spec.static", "must be a mapping with `host` and `port`")
        return None, problems
    for key in static:
        if key not in _STATIC_FIELDS:
            reason = "Unsupported" if key == "unixPath" else "Invalid"
            fail(f"spec.static.{key}", "is not supported by llmgw", reason)
    host, port = static.get("host"), static.get("port")
    if not isinstance(host, str) or not host:
        fail("spec.static.host", "is required (a host name or IP address)")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        fail("spec.static.port", f"is required: an integer 1-65535, got {port!r}")
    policies = spec.get("policies") or {}
    if not isinstance(policies, Mapping):
        fail("spec.policies", "must be a mapping")
        policies = {}
    problems.extend(check_policies(res, "spec.policies", policies, known=_PLAIN_POLICY_FIELDS, ai=False))
    if problems:
        return None, problems
    assert isinstance(host, str) and isinstance(port, int)
    tls, tls_problems = tls_policy(
        res, "spec.policies.tls", policies.get("tls"), host, secrets=secrets, configmaps=configmaps
    )
    problems.extend(tls_problems)
    auth_block = policies.get("auth")
    auth = None
    if auth_block is not None:
        if isinstance(auth_block, Mapping):
            for kind in _EXTPROC_AUTH:
                if kind in auth_block:
                    fail(
                        f"spec.policies.auth.{kind}",
                        "is not supported by llmgw on a static backend (only `key` and `secretRef`; "
                        "cloud credentials need an AI backend)",
                        "Unsupported",
                    )
        if not problems:
            auth, auth_problems = secret_auth(res, "spec.policies.auth", auth_block, _PLAIN_AUTH, secrets=secrets)
            problems.extend(auth_problems)
    if problems:
        return None, problems
    return (
        PlainBackendIR(
            key=res.key,
            cluster=static_cluster(res.key),
            host=host,
            port=port,
            tls=tls if "tls" in policies else None,
            auth=auth,
            rewrite_host=not _is_ip(host),
            connect_timeout_s=_duration(policies, "tcp", "connectTimeout"),
            request_timeout_s=_duration(policies, "http", "requestTimeout"),
            source="static",
        ),
        [],
    )


def _duration(policies: Mapping[str, Any], policy: str, fld: str) -> float | None:
    block = policies.get(policy)
    value = block.get(fld) if isinstance(block, Mapping) else None
    return parse_duration(value) or None if isinstance(value, str) else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ServiceBackends:
    """Resolves `Service` backendRefs to plain backends, one cluster per (Service, port)."""

    def __init__(self, services: list[Resource], *, complete: bool = False) -> None:
        """`complete`: `services` is every Service that exists (the controller's cache), so a
        Service ref to another one is not found; in files, an unlisted Service goes to cluster DNS."""
        self.services = {s.key: s for s in services}
        self.complete = complete
        self.backends: dict[str, PlainBackendIR] = {}
        self.notes: list[Problem] = []

    def resolver(self, route: Resource) -> Callable[[str, str, str, Any], str]:
        """`resolve(field, namespace, name, port) -> cluster`; raises ServiceRefError."""

        def resolve(fld: str, namespace: str, name: str, port: Any) -> str:
            return self._resolve(route, fld, namespace, name, port)

        return resolve

    def _resolve(self, route: Resource, fld: str, namespace: str, name: str, port: Any) -> str:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ServiceRefError("port is required for a Service backendRef (an integer 1-65535)")
        svc = self.services.get(f"{namespace}/{name}")
        if svc is None and self.complete:
            raise ServiceRefError(f"Service {namespace}/{name} not found")
        spec = svc.spec if svc is not None else {}
        if spec.get("type") == "ExternalName":
            host = spec.get("externalName")
            if not isinstance(host, str) or not host:
                raise ServiceRefError(f"Service {namespace}/{name} has type ExternalName but no externalName")
            source = f"Service {namespace}/{name} (ExternalName)"
        else:
            ports = [p.get("port") for p in spec.get("ports") or [] if isinstance(p, Mapping)]
            if svc is not None and ports and port not in ports:
                raise ServiceRefError(f"Service {namespace}/{name} has no port {port} (it has {ports})")
            host = f"{name}.{namespace}.{CLUSTER_DNS_SUFFIX}"
            source = f"Service {namespace}/{name} via cluster DNS"
            if svc is None:
                self.notes.append(
                    Problem(
                        route.file,
                        route.ref,
                        fld,
                        f"Service {namespace}/{name} is not among the manifests: reached at {host}:{port} "
                        "(cluster DNS); outside a cluster, add a Service of type ExternalName to point it elsewhere",
                        "ResolvedByDNS",
                    )
                )
        cluster = service_cluster(namespace, name, port)
        self.backends.setdefault(
            cluster,
            PlainBackendIR(
                key=f"{namespace}/{name}:{port}",
                cluster=cluster,
                host=host,
                port=port,
                rewrite_host=False,
                source=source,
            ),
        )
        return cluster
