"""The intermediate representation between Kubernetes-shaped resources and Envoy protos.

Frozen dataclasses, no Kubernetes objects and no protobuf messages (DESIGN
convention 2). `gatewayapi` builds it, `xds` and `extproc_config` read it.
Secret values live here only in `AuthIR.value` (repr=False) and leave only
through the extproc config channel, never into Envoy resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extproc import wire

DEFAULT_REQUEST_TIMEOUT_S = 300.0
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class AuthIR:
    header: str
    prefix: str
    value: str = field(repr=False)
    source: str
    kind: str = "header"  # header | aws | gcp | azure (extproc.credentials)
    params: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # resolved secret fields


@dataclass(frozen=True)
class TLSIR:
    sni: str
    ca_pem: str | None = None  # None: the system trust store
    insecure_skip_verify: bool = False  # insecureSkipVerify: All (no verification at all)
    skip_hostname_verify: bool = False  # insecureSkipVerify: Hostname (CA checked, SAN not)


@dataclass(frozen=True)
class ProviderIR:
    id: str  # "<ns>/<backend>/<provider>"
    name: str
    kind: str
    host: str
    port: int
    tls: TLSIR | None
    model: str | None
    path: str | None
    path_prefix: str
    auth: AuthIR | None
    settings: tuple[tuple[str, str], ...] = ()  # provider-block fields (region, projectId, apiVersion, ...)
    priority: int = 0  # index of its group in spec.ai.groups: Envoy tries lower priorities first


@dataclass(frozen=True)
class BackendIR:
    key: str  # "<ns>/<name>"
    providers: tuple[ProviderIR, ...]
    # policies.tcp.connectTimeout / policies.http.requestTimeout; one cluster, so one value per backend
    connect_timeout_s: float | None = None
    request_timeout_s: float | None = None  # per attempt: the route's per-try timeout

    @property
    def cluster(self) -> str:
        return wire.backend_cluster(self.key)

    @property
    def fails_over(self) -> bool:
        """Several providers: a failed attempt is retried on another one (the next group first)."""
        return len(self.providers) > 1


# --- Inference pools (Gateway API Inference Extension, inference.networking.k8s.io/v1) ---------


@dataclass(frozen=True)
class EndpointPickerIR:
    """An InferencePool's `endpointPickerRef`: the EPP's address and what to do when it fails."""

    host: str  # an IP or a DNS name Envoy resolves
    port: int
    fail_open: bool = False  # FailOpen: any ready pod when the EPP cannot answer; FailClose: 503


@dataclass(frozen=True)
class PoolIR:
    """One InferencePool: its ready pods' endpoints (pod IP x targetPort) and its picker."""

    key: str  # "<ns>/<name>"
    endpoints: tuple[tuple[str, int], ...]  # (ip, port) of every ready pod and target port, sorted
    picker: EndpointPickerIR | None  # None: no endpointPickerRef, Envoy balances over the ready pods
    h2c: bool = False  # appProtocol kubernetes.io/h2c: HTTP/2 without TLS to the model servers
    engine: str = "vllm"  # label inference.networking.k8s.io/engine-type: the metric names llmgw's picker reads
    objectives: tuple[tuple[str, int], ...] = ()  # InferenceObjectives on it: (name, priority), for llmgw's picker

    @property
    def cluster(self) -> str:
        return wire.pool_cluster(self.key)

    @property
    def picker_cluster(self) -> str:
        return wire.epp_cluster(self.key)


@dataclass(frozen=True)
class StringMatchIR:
    kind: str  # Exact | RegularExpression
    name: str
    value: str


@dataclass(frozen=True)
class MatchIR:
    path_type: str  # Exact | PathPrefix | RegularExpression
    path: str
    headers: tuple[StringMatchIR, ...] = ()
    query: tuple[StringMatchIR, ...] = ()
    method: str | None = None


@dataclass(frozen=True)
class HeaderModIR:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class RewriteIR:
    prefix: str | None = None  # ReplacePrefixMatch
    full_path: str | None = None  # ReplaceFullPath
    hostname: str | None = None


@dataclass(frozen=True)
class WeightedBackendIR:
    cluster: str
    weight: int
    # An invalid backendRef keeps its share of the traffic and points at a cluster that
    # deliberately does not exist, so that share gets a 500 (Gateway API) instead of
    # going to the valid backends.
    invalid: bool = False


@dataclass(frozen=True)
class RetryIR:
    """Gateway API `rules[].retry` (GEP-1731) and `timeouts.backendRequest`; None fields: defaults."""

    attempts: int | None = None
    codes: tuple[int, ...] | None = None
    backoff_s: float | None = None
    per_try_timeout_s: float | None = None


@dataclass(frozen=True)
class RouteIR:
    name: str  # unique Envoy route name: "httproute/<ns>/<name>/rule/<i>/match/<j>"
    route: str  # "<ns>/<name>" of the HTTPRoute (metrics label)
    match: MatchIR
    backends: tuple[WeightedBackendIR, ...]
    ai: bool  # routes to AIBackends: the router stage processes it
    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    rewrite: RewriteIR | None = None
    request_headers: HeaderModIR | None = None
    response_headers: HeaderModIR | None = None
    sort_key: tuple[object, ...] = ()
    error: str = ""  # why a route without backends answers 500 ("" = it has no valid backend)
    retry: RetryIR | None = None  # HTTPRoute rules[].retry and timeouts.backendRequest
    # Set when the router stage can do the attempt stage's work itself (see gatewayapi/direct.py):
    # the provider this route always reaches, through the backend's cluster without an attempt stage.
    direct_provider: str | None = None


@dataclass(frozen=True)
class VirtualHostIR:
    name: str
    domains: tuple[str, ...]
    routes: tuple[RouteIR, ...]


@dataclass(frozen=True)
class ListenerIR:
    name: str  # "<gw ns>/<gw name>/<port>"
    gateway: str  # "<ns>/<name>"
    port: int
    address: str
    virtual_hosts: tuple[VirtualHostIR, ...]
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True)
class IR:
    listeners: tuple[ListenerIR, ...] = ()
    backends: tuple[BackendIR, ...] = ()
    models: tuple[tuple[str, tuple[str, ...]], ...] = ()  # gateway -> model ids for /models
    pools: tuple[PoolIR, ...] = ()  # InferencePools some route sends to

    def validate(self) -> list[str]:
        """Internal consistency: every routed cluster exists, names are unique."""
        errors: list[str] = []
        clusters = {b.cluster for b in self.backends} | {p.cluster for p in self.pools}
        ports: dict[tuple[str, int], str] = {}
        for listener in self.listeners:
            addr = (listener.address, listener.port)
            if addr in ports:
                errors.append(f"listener {listener.name} reuses port {listener.port} of {ports[addr]}")
            ports[addr] = listener.name
            for vhost in listener.virtual_hosts:
                for route in vhost.routes:
                    errors.extend(
                        f"route {route.name} points at unknown cluster {wb.cluster}"
                        for wb in route.backends
                        if wb.cluster not in clusters and not wb.invalid
                    )
        return errors
