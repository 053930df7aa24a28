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
    kind: str = "header"  # header | aws | gcp | azure: which module in extproc.credentials makes the headers
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


@dataclass(frozen=True)
class PoolPickConfig:
    """An InferencePool whose endpoint llmgw picks itself (it has no endpointPickerRef)."""

    endpoints: list[str] = field(default_factory=list)  # "ip:port" of its ready pods x targetPorts
    engine: str = "vllm"  # which metric names its model servers expose (extproc.picker.engines)
    objectives: dict[str, int] = field(default_factory=dict)  # InferenceObjective name -> priority


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
    # InferencePools llmgw picks for (pool key -> its endpoints and objectives), the Envoy routes
    # to them (route name -> pool key) and, per gateway, the models whose exact model-header
    # match routes to one (model -> pool key): the route after the body's model is known.
    pools: dict[str, PoolPickConfig] = field(default_factory=dict)
    pool_routes: dict[str, str] = field(default_factory=dict)
    pool_models: dict[str, dict[str, str]] = field(default_factory=dict)
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
            providers[pid] = ProviderConfig(**{**p, "auth": auth})
        direct = raw.get("direct_routes", {})
        if not isinstance(direct, dict):
            raise ValueError("direct_routes must be an object")
        return cls(
            version=str(raw["version"]),
            providers=providers,
            models={k: list(v) for k, v in raw.get("models", {}).items()},
            direct_routes={str(k): str(v) for k, v in direct.items()},
            pools={str(k): PoolPickConfig(**v) for k, v in raw.get("pools", {}).items()},
            pool_routes={str(k): str(v) for k, v in raw.get("pool_routes", {}).items()},
            pool_models={str(g): {str(m): str(p) for m, p in v.items()} for g, v in raw.get("pool_models", {}).items()},
        )


EMPTY = ExtprocConfig(version="")
