"""The intermediate representation between Kubernetes-shaped resources and Envoy protos.

Frozen dataclasses, no Kubernetes objects and no protobuf messages (DESIGN
convention 2). `gatewayapi` builds it, `xds` and `extproc_config` read it.
Secret values live here only in `AuthIR.value` (repr=False) and leave only
through the extproc config channel, never into Envoy resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extproc import wire

DEFAULT_REQUEST_TIMEOUT_S = 300.0
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


# --- Policies (AIPolicy / AgentgatewayPolicy, resolved by gatewayapi/policy_attach.py) -----------
# Nothing downstream reads targetRefs: each RouteIR carries its effective traffic policy and each
# BackendIR its backend policy. Fields are whole units: a more specific policy replaces a field,
# it never merges inside one (agentgateway's rule).


@dataclass(frozen=True)
class ApiKeyIR:
    """One accepted API key: never the key itself, only its SHA-256 (hex) and who it belongs to."""

    key_id: str  # "<namespace>/<Secret or ConfigMap>/<entry>": logged and labelled, never secret
    sha256: str = field(repr=False)
    user: str | None = None
    team: str | None = None
    tenant: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # further metadata (strings), sorted by name


@dataclass(frozen=True)
class ApiKeyAuthIR:
    """`traffic.apiKeyAuthentication`: Strict rejects, Optional lets no key through, Permissive never rejects."""

    mode: str  # Strict | Optional | Permissive
    keys: tuple[ApiKeyIR, ...]
    # location.header: read the key only there (prefix stripped); None: Authorization Bearer, x-api-key, api-key
    header: str | None = None
    prefix: str = ""
    source: str = ""  # "<Kind> <ns>/<name>" of the policy


@dataclass(frozen=True)
class JwtProviderIR:
    issuer: str
    audiences: tuple[str, ...] = ()  # empty: any audience
    jwks_inline: str | None = None  # a JSON Web Key Set (public keys)
    jwks_uri: str | None = None  # remote JWKS (http:// or https://)
    cache_duration_s: float = 300.0


@dataclass(frozen=True)
class JwtAuthIR:
    """`traffic.jwtAuthentication`, enforced by Envoy's jwt_authn filter (controlplane/xds/jwt_authn.py)."""

    mode: str  # Strict | Optional | Permissive
    providers: tuple[JwtProviderIR, ...]
    header: str = "authorization"
    prefix: str = "Bearer "
    source: str = ""


@dataclass(frozen=True)
class CallerExportIR:
    """`traffic.callerIdentity` (llmgw extension): where the caller's identity may go besides the access log."""

    upstream_headers: tuple[tuple[str, str], ...] = ()  # (identity field, request header to the provider)
    metric_labels: tuple[str, ...] = ()  # identity fields allowed as metric labels (caller_<field>)


@dataclass(frozen=True)
class RoutePolicyIR:
    """The effective `traffic` policy of one route on one listener (None fields: not set)."""

    # metadata "manifest": the field's name under `traffic` (problems and status name it)
    api_key: ApiKeyAuthIR | None = field(default=None, metadata={"manifest": "apiKeyAuthentication"})
    jwt: JwtAuthIR | None = field(default=None, metadata={"manifest": "jwtAuthentication"})
    rate_limit: RateLimitIR | None = field(default=None, metadata={"manifest": "rateLimit"})  # policy_ratelimit.py
    caller_export: CallerExportIR | None = field(default=None, metadata={"manifest": "callerIdentity"})
    sources: tuple[str, ...] = ()  # "<Kind> <ns>/<name>" of every policy that contributed, most specific first

    @property
    def authenticates(self) -> bool:
        return self.api_key is not None or self.jwt is not None


@dataclass(frozen=True)
class BackendPolicyIR:
    """The effective `backend` policy of one AI backend (parts llmgw acts on; see policy_ai.py)."""

    # metadata "manifest": the field's name under `backend` (problems and status name it)
    transforms: TransformsIR | None = field(default=None, metadata={"manifest": "ai"})
    prompt_guard: PromptGuardIR | None = field(default=None, metadata={"manifest": "ai.promptGuard"})
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthIR:
    header: str
    prefix: str
    value: str = field(repr=False)
    source: str
    kind: str = "header"  # header | aws | gcp | azure | passthrough (extproc.credentials)
    params: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # resolved secret fields


@dataclass(frozen=True)
class TLSIR:
    sni: str
    ca_pem: str | None = None  # None: the system trust store
    insecure_skip_verify: bool = False  # insecureSkipVerify: All (no verification at all)
    skip_hostname_verify: bool = False  # insecureSkipVerify: Hostname (CA checked, SAN not)


# --- policies.ai request transforms (controlplane/gatewayapi/ai_transforms.py) -------------------


@dataclass(frozen=True)
class PromptCachingIR:
    cache_system: bool = True
    cache_messages: bool = True
    cache_tools: bool = False
    min_tokens: int = 1024
    cache_message_offset: int = 0


@dataclass(frozen=True)
class TransformsIR:
    """`policies.ai` modelAliases, defaults, overrides, prompt, transformations, promptCaching.

    Written at backend level (BackendIR.transforms) and per provider (ProviderIR.transforms);
    the effective one is the two merged field by field, the provider's winning (`merged`).
    """

    aliases: tuple[tuple[str, str], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()  # JSON values
    overrides: tuple[tuple[str, Any], ...] = ()
    transformations: tuple[tuple[str, str], ...] = ()  # field -> CEL
    final_transformations: tuple[tuple[str, str], ...] = ()
    prepend: tuple[tuple[str, str], ...] = ()  # (role, content)
    append: tuple[tuple[str, str], ...] = ()
    prompt_caching: PromptCachingIR | None = None

    def merged(self, own: TransformsIR | None) -> TransformsIR:
        """These (backend-level) transforms with a provider's `own` written over them, field by field."""
        if own is None:
            return self
        return TransformsIR(**{name: getattr(own, name) or getattr(self, name) for name in self.__dataclass_fields__})


@dataclass(frozen=True)
class PriceIR:
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    model: str | None = None  # None: every model of the provider


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
    pricing: tuple[PriceIR, ...] = ()  # `pricing`: USD per million tokens, over the catalog (extproc/cost.py)
    transforms: TransformsIR | None = None  # its own policies.ai transforms (BackendIR's merged under them)


# --- prompt guards (controlplane/gatewayapi/ai_guards.py builds them) --------------------------


@dataclass(frozen=True)
class GuardIR:
    """One prompt guard of `policies.ai.promptGuard.request[]` or `.response[]`.

    `kind` is the agentgateway field name (regex, webhook, openAIModeration, bedrockGuardrails,
    googleModelArmor, azureContentSafety); the fields after `scope` apply to some kinds only.
    """

    kind: str
    message: str  # response.message: the rejection's message
    status: int  # response.statusCode
    scope: tuple[str, ...] = ("SystemPrompt", "Messages")
    action: str = "Mask"  # regex: Mask | Reject
    builtins: tuple[str, ...] = ()  # regex: Ssn, CreditCard, PhoneNumber, Email, CaSin
    patterns: tuple[str, ...] = ()  # regex: RE2 patterns
    url: str = ""  # remote kinds: scheme://host:port of the service
    verify_tls: bool = True
    sni: str = ""  # policies.tls.sni ("": the host)
    timeout_s: float = 3.0  # policies.http.requestTimeout (webhook: timeout)
    connect_timeout_s: float | None = None  # policies.tcp.connectTimeout
    failure_mode: str = "FailClosed"  # webhook: FailOpen | FailClosed
    forward_headers: tuple[StringMatchIR, ...] = ()  # webhook: forwardHeaderMatches
    settings: tuple[tuple[str, str], ...] = ()  # model, identifier, version, region, templateId, ...
    auth: AuthIR | None = None


@dataclass(frozen=True)
class PromptGuardIR:
    request: tuple[GuardIR, ...] = ()
    response: tuple[GuardIR, ...] = ()
    streaming: bool = False  # promptGuard.streaming: Enabled (guards on streamed responses)


# --- end prompt guards -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendIR:
    key: str  # "<ns>/<name>"
    providers: tuple[ProviderIR, ...]
    # policies.tcp.connectTimeout / policies.http.requestTimeout; one cluster, so one value per backend
    connect_timeout_s: float | None = None
    request_timeout_s: float | None = None  # per attempt: the route's per-try timeout
    policy: BackendPolicyIR | None = None  # attached `backend` policies (gatewayapi/policy_attach.py)
    transforms: TransformsIR | None = None  # spec.policies.ai request transforms (every provider)
    # policies.ai.routes: (path suffix or "*", operation name or "passthrough"), extproc.operations
    routes: tuple[tuple[str, str], ...] = ()
    prompt_guard: PromptGuardIR | None = None  # policies.ai.promptGuard

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


# --- plain (non-AI) backends: AgentgatewayBackend spec.static and Service backendRefs -------------


@dataclass(frozen=True)
class PlainBackendIR:
    """A plain HTTP upstream: Envoy proxies it alone, no extproc on its routes or its cluster.

    `auth` (a static header credential) is injected by Envoy's credential_injector
    filter from an SDS secret (controlplane/xds/credential_injector.py), never written
    into the cluster or route config.
    """

    key: str  # "<ns>/<name>" (a Service: "<ns>/<name>:<port>")
    cluster: str
    host: str
    port: int
    tls: TLSIR | None = None
    auth: AuthIR | None = None
    rewrite_host: bool = True  # Host becomes `host` (hostname-based backends; not Services or IPs)
    connect_timeout_s: float | None = None
    request_timeout_s: float | None = None
    source: str = ""  # how it resolved, for `llmgw run`'s summary ("static", "Service via cluster DNS", ...)


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
class RedirectIR:
    """HTTPRoute RequestRedirect: Envoy answers the redirect itself (no backend)."""

    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    prefix: str | None = None  # ReplacePrefixMatch
    full_path: str | None = None  # ReplaceFullPath
    status: int = 302


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
    policy: RoutePolicyIR | None = None  # effective `traffic` policy (gatewayapi/policy_attach.py)
    redirect: RedirectIR | None = None  # RequestRedirect: answered by Envoy, backends ignored


@dataclass(frozen=True)
class VirtualHostIR:
    name: str
    domains: tuple[str, ...]
    routes: tuple[RouteIR, ...]


# --- HTTPS listeners (gatewayapi/listener_tls.py, xds/listener_tls.py)
@dataclass(frozen=True)
class TlsCertificateIR:
    """A served certificate: its SDS secret name, the PEM chain and the PEM key (never in a repr)."""

    secret: str  # "llmgw-tls/<ns>/<name>"
    certificate_chain: str = field(repr=False)
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class TlsChainIR:
    """One filter chain of an HTTPS port: the SNI names it answers (() = any) and its certificates."""

    server_names: tuple[str, ...]
    certificates: tuple[TlsCertificateIR, ...]


@dataclass(frozen=True)
class ListenerIR:
    name: str  # "<gw ns>/<gw name>/<port>"
    gateway: str  # "<ns>/<name>"
    port: int
    address: str
    virtual_hosts: tuple[VirtualHostIR, ...]
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tls: tuple[TlsChainIR, ...] = ()  # HTTPS: one chain per listener hostname; () = plain HTTP


@dataclass(frozen=True)
class IR:
    listeners: tuple[ListenerIR, ...] = ()
    backends: tuple[BackendIR, ...] = ()
    models: tuple[tuple[str, tuple[str, ...]], ...] = ()  # gateway -> model ids for /models
    pools: tuple[PoolIR, ...] = ()  # InferencePools some route sends to
    # gateway -> (alias, target): modelAliases resolved before routing (gatewayapi/ai_transforms.py)
    aliases: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    plain_backends: tuple[PlainBackendIR, ...] = ()

    def validate(self) -> list[str]:
        """Internal consistency: every routed cluster exists, names are unique."""
        errors: list[str] = []
        clusters = (
            {b.cluster for b in self.backends}
            | {p.cluster for p in self.pools}
            | {b.cluster for b in self.plain_backends}
        )
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


# --- Limits and budgets (gatewayapi/policy_ratelimit.py -> extproc/policies/limits.py) -------------


@dataclass(frozen=True)
class LimitRuleIR:
    """One limit of a policy's `traffic.rateLimit.local` (agentgateway's requests/tokens, our usd/keys)."""

    id: str  # "<policy ns>/<policy name>/local/<i>": names its buckets in the store
    kind: str  # requests | tokens | usd
    amount: float
    unit: str  # second | minute | hour | day | month
    burst: float = 0
    keys: tuple[str, ...] = ()  # descriptor: identity fields, route, model, backend, header:<name>


@dataclass(frozen=True)
class DescriptorEntryIR:
    """One entry of a global descriptor, as an Envoy rate-limit action."""

    key: str  # the entry's `name`: the descriptor key the rate-limit service sees
    header: str | None = None  # value from this request header (`request.headers["x"]`)
    value: str | None = None  # a constant (a string literal)


@dataclass(frozen=True)
class GlobalDescriptorIR:
    entries: tuple[DescriptorEntryIR, ...]
    tokens: bool = False  # unit Tokens: 1 hit on the request, the rest of its tokens at stream end


@dataclass(frozen=True)
class GlobalRateLimitIR:
    """`traffic.rateLimit.global`: Envoy's ratelimit filter against a rate-limit service (xds/ratelimit.py)."""

    domain: str
    host: str
    port: int
    descriptors: tuple[GlobalDescriptorIR, ...]
    fail_open: bool = False  # failureMode FailOpen; agentgateway's default is FailClosed

    @property
    def cluster(self) -> str:
        return f"ratelimit/{self.host}:{self.port}"


@dataclass(frozen=True)
class RateLimitIR:
    """`traffic.rateLimit` as llmgw enforces it (a whole unit: a more specific policy replaces it)."""

    local: tuple[LimitRuleIR, ...] = ()
    global_limit: GlobalRateLimitIR | None = None
