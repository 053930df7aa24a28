"""The versioned config contract between the control plane and extproc workers.

Plain frozen dataclasses with a JSON encoding, so neither side imports the
other's Kubernetes or protobuf types (DESIGN: "extproc and controlplane share
only a small versioned config contract"). Secrets travel here, never in Envoy
config; this channel is a local Unix socket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from extproc.policies.guards.config import PromptGuardConfig

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class AuthConfig:
    """Where and how the provider credential goes on the upstream request.

    `value` and `params` hold secrets: they are left out of `repr`/`str` (and so of
    every log line and error message that formats the config); only `to_json`, for
    the config channel, carries them.
    """

    header: str = "authorization"
    prefix: str = "Bearer "
    value: str = field(default="", repr=False)
    source: str = ""  # human-readable origin ("secret default/openai-key"), never the value
    kind: str = (
        "header"  # header | aws | gcp | azure | passthrough: which module in extproc.credentials makes the headers
    )
    # Resolved inputs of that kind (secret fields, region).
    params: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        redacted = "<redacted>" if self.value or self.params else "<none>"
        return (
            f"AuthConfig(kind={self.kind!r}, header={self.header!r}, source={self.source!r}, "
            f"params={sorted(self.params)!r}, value={redacted})"
        )

    __str__ = __repr__

    def header_value(self) -> str:
        """The full header value; a value that already carries the prefix is kept as is."""
        if self.prefix and self.value.lower().startswith(self.prefix.strip().lower() + " "):
            return self.value
        return f"{self.prefix}{self.value}"


# --- AI request transforms (policies.ai: aliases, defaults, overrides, prompts, CEL, caching) ----


@dataclass(frozen=True)
class PromptCachingConfig:
    """`promptCaching`: where the gateway puts cache markers (Anthropic `cache_control`, Bedrock `cachePoint`)."""

    cache_system: bool = True
    cache_messages: bool = True
    cache_tools: bool = False
    min_tokens: int = 1024  # estimated prompt tokens below which no marker is added (0: always)
    cache_message_offset: int = 0  # 0: the second-to-last message; N: N messages earlier


@dataclass(frozen=True)
class TransformsConfig:
    """One provider's effective `policies.ai` request transforms (backend-level merged with its own).

    Values are JSON data from the manifest; the extproc compiles the CEL once per config
    (extproc/policies/transforms.py). Applied in the order agentgateway documents.
    """

    aliases: dict[str, str] = field(default_factory=dict)  # friendly name or `*` pattern -> model
    defaults: dict[str, Any] = field(default_factory=dict)  # body field -> value, set when absent
    overrides: dict[str, Any] = field(default_factory=dict)  # body field -> value, always set
    transformations: dict[str, str] = field(default_factory=dict)  # body field -> CEL (client schema)
    final_transformations: dict[str, str] = field(default_factory=dict)  # body field -> CEL (provider schema)
    prepend: list[dict[str, str]] = field(default_factory=list)  # [{role, content}] before the client's
    append: list[dict[str, str]] = field(default_factory=list)  # [{role, content}] after the client's
    prompt_caching: PromptCachingConfig | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TransformsConfig:
        caching = raw.get("prompt_caching")
        return cls(**{**raw, "prompt_caching": PromptCachingConfig(**caching) if caching else None})


@dataclass(frozen=True)
class ProviderConfig:
    """One upstream provider as the extproc sees it (an endpoint of a backend cluster)."""

    id: str  # "<namespace>/<backend>/<provider name>": endpoint metadata carries it
    backend: str  # "<namespace>/<backend>"
    kind: str  # openai | custom | ...
    host: str
    model: str | None = None  # overrides the body's model upstream
    path: str | None = None  # full upstream path (wins over pathPrefix)
    path_prefix: str = "/v1"  # prefix put before the operation suffix
    auth: AuthConfig | None = None
    # Provider-kind settings from the manifest (region, projectId, deploymentName,
    # apiVersion, resourceName, ...), keyed by their manifest field names.
    settings: dict[str, str] = field(default_factory=dict)
    transforms: TransformsConfig | None = None  # policies.ai request transforms (None: none)
    # The backend's `policies.ai.routes`: (path suffix or "*", operation name or "passthrough").
    routes: tuple[tuple[str, str], ...] = ()
    # --- cost (extproc/cost.py): the manifest's `pricing`, USD per million tokens; wins over the catalog
    pricing: tuple[PriceConfig, ...] = ()


@dataclass(frozen=True)
class PriceConfig:
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    model: str | None = None  # None: every model of the provider


@dataclass(frozen=True)
class LimitRuleConfig:
    """One limit or budget of a route (extproc/policies/limits.py), from `traffic.rateLimit` or our `limits`.

    A bucket per distinct value of `keys` (identity fields such as `user`,
    `team`, `tenant`, `key_id`, or `route`, `model`, `backend`,
    `header:<name>`) holding `amount` per `unit`, plus `burst`.
    """

    id: str  # stable: "<policy ns>/<policy name>/<field path>"; part of every bucket key
    kind: str  # requests | tokens | usd
    amount: float
    unit: str  # second | minute | hour | day | month
    burst: float = 0
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiKeyEntry:
    """One accepted API key: its SHA-256 digest (hex) and its owner; never the key itself."""

    key_id: str
    sha256: str = field(repr=False)
    user: str | None = None
    team: str | None = None
    tenant: str | None = None
    labels: list[list[str]] = field(default_factory=list)  # [[name, value], ...]


@dataclass(frozen=True)
class ApiKeyPolicyConfig:
    """`traffic.apiKeyAuthentication` as the router stage enforces it (extproc/policies/authn.py)."""

    id: str  # content digest: the Envoy route name carries it (wire.authn_route_name)
    mode: str  # Strict | Optional | Permissive
    keys: list[ApiKeyEntry] = field(default_factory=list, repr=False)
    header: str | None = None  # None: authorization (Bearer), x-api-key, api-key
    prefix: str = ""
    source: str = ""


@dataclass(frozen=True)
class JwtPolicyConfig:
    """`traffic.jwtAuthentication`: Envoy's jwt_authn validates; the router stage reads the payloads."""

    mode: str  # Strict | Optional | Permissive
    providers: list[str] = field(default_factory=list)  # jwt_authn provider names = their payload keys
    header: str = "authorization"
    prefix: str = "Bearer "
    source: str = ""


@dataclass(frozen=True)
class AuthnConfig:
    """The authentication of a route (API key and/or JWT: both must pass); its id rides in the route name."""

    id: str
    api_key: ApiKeyPolicyConfig | None = None
    jwt: JwtPolicyConfig | None = None
    # traffic.callerIdentity: identity field -> upstream request header; fields allowed as metric labels
    upstream_headers: dict[str, str] = field(default_factory=dict)
    metric_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExtprocConfig:
    """Everything a worker needs; replaced atomically as a whole."""

    version: str
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    # gateway ("<ns>/<name>") -> model ids answered on GET .../models
    models: dict[str, list[str]] = field(default_factory=dict)
    # Envoy route name -> provider id, for routes whose provider is known on the headers:
    # the router stage does the attempt stage's work (controlplane/gatewayapi/direct.py).
    direct_routes: dict[str, str] = field(default_factory=dict)
    # Route authentication by id, and the ids each gateway's routes use (the router stage checks a
    # caller against all of them: model routing may move the request to another route).
    authn: dict[str, AuthnConfig] = field(default_factory=dict)
    gateway_authn: dict[str, list[str]] = field(default_factory=dict)
    # gateway -> model alias -> target, resolved before routing (x-gateway-model-name): the aliases of
    # the backends the gateway's AI routes reach, where they agree (extproc/policies/transforms.py).
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    # Envoy route name -> its backends' `policies.ai.routes`, for the router stage (which does not
    # know the provider yet): the operation, or passthrough, of a path on that route.
    route_types: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # backend ("<namespace>/<name>") -> its policies.ai.promptGuard (extproc/policies/guards)
    guards: dict[str, PromptGuardConfig] = field(default_factory=dict)
    # --- limits: Envoy route name -> its limits and budgets (extproc/policies/limits.py)
    limits: dict[str, tuple[LimitRuleConfig, ...]] = field(default_factory=dict)
    contract: int = CONTRACT_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> ExtprocConfig:
        raw: Any = orjson.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("config must be a JSON object")
        if raw.get("contract") != CONTRACT_VERSION:
            raise ValueError(
                f"config contract {raw.get('contract')!r} is not supported (this worker speaks {CONTRACT_VERSION})"
            )
        providers = {}
        raw_providers = raw.get("providers", {})
        if not isinstance(raw_providers, dict) or not all(isinstance(p, dict) for p in raw_providers.values()):
            raise ValueError("providers must be an object of objects")
        for pid, p in raw_providers.items():
            auth = AuthConfig(**p["auth"]) if p.get("auth") else None
            transforms = TransformsConfig.from_dict(p["transforms"]) if p.get("transforms") else None
            routes = _route_types(p.get("routes", ()))
            pricing = tuple(PriceConfig(**x) for x in p.get("pricing") or ())
            providers[pid] = ProviderConfig(
                **{**p, "auth": auth, "transforms": transforms, "routes": routes, "pricing": pricing}
            )
        direct = raw.get("direct_routes", {})
        if not isinstance(direct, dict):
            raise ValueError("direct_routes must be an object")
        route_types = raw.get("route_types", {})
        if not isinstance(route_types, dict):
            raise ValueError("route_types must be an object")
        guards = raw.get("guards", {})
        if not isinstance(guards, dict) or not all(isinstance(g, dict) for g in guards.values()):
            raise ValueError("guards must be an object of objects")
        authn = {}
        raw_authn = raw.get("authn", {})
        if not isinstance(raw_authn, dict) or not all(isinstance(a, dict) for a in raw_authn.values()):
            raise ValueError("authn must be an object of objects")
        for aid, a in raw_authn.items():
            key = a.get("api_key")
            api_key = (
                ApiKeyPolicyConfig(**{**key, "keys": [ApiKeyEntry(**e) for e in key.get("keys", [])]}) if key else None
            )
            jwt = JwtPolicyConfig(**a["jwt"]) if a.get("jwt") else None
            authn[str(aid)] = AuthnConfig(
                id=str(a.get("id", aid)),
                api_key=api_key,
                jwt=jwt,
                upstream_headers={str(k): str(v) for k, v in (a.get("upstream_headers") or {}).items()},
                metric_labels=[str(f) for f in a.get("metric_labels") or []],
            )
        return cls(
            version=str(raw["version"]),
            authn=authn,
            gateway_authn={str(k): [str(i) for i in v] for k, v in raw.get("gateway_authn", {}).items()},
            providers=providers,
            models={k: list(v) for k, v in raw.get("models", {}).items()},
            direct_routes={str(k): str(v) for k, v in direct.items()},
            aliases={str(gw): {str(k): str(v) for k, v in a.items()} for gw, a in raw.get("aliases", {}).items()},
            route_types={str(k): _route_types(v) for k, v in route_types.items()},
            guards={str(k): PromptGuardConfig.from_dict(g) for k, g in guards.items()},
            limits={
                str(route): tuple(LimitRuleConfig(**{**r, "keys": tuple(r.get("keys", ()))}) for r in rules)
                for route, rules in (raw.get("limits") or {}).items()
            },
        )


def _route_types(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(r, list | tuple) and len(r) == 2 for r in raw):
        raise ValueError("routes must be a list of [suffix, type] pairs")
    return tuple((str(suffix), str(kind)) for suffix, kind in raw)


EMPTY = ExtprocConfig(version="")
