"""OpenTelemetry traces through Envoy's own tracer: one HCM `tracing` block and the collector's cluster.

Envoy creates the server span of every request (continuing the client's W3C
`traceparent`, or starting a trace) and, with `spawn_upstream_span`, one client
span per upstream attempt, so a failover shows as two attempt spans; it injects
the attempt's `traceparent` into the request to the provider. Spans go out over
OTLP/gRPC to the collector named by `llmgw run --otlp-endpoint`.

The GenAI semantic-convention attributes come from the extproc: the router
stage writes them as dynamic metadata (namespace `llmgw`, the same keys the
access log reads), and custom tags copy them onto the server span when Envoy
finishes it. Prompts and completions are attributes only with `--trace-content`
(`record_content`): then the workers are told to write them as metadata too.

Sampling is a percentage per Gateway (`--trace-sampling [NS/NAME=]PERCENT`);
a client's sampled `traceparent` is honoured (the parent decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.xds import names
from controlplane.xds.common import TYPE_PREFIX as _T
from controlplane.xds.common import duration
from extproc import wire

OTLP_CLUSTER = "llmgw_otlp"
SERVICE_NAME = "llmgw"

# Span attribute -> dynamic metadata key the router stage writes (extproc/router_stage.py `_metadata`).
GEN_AI_TAGS: tuple[tuple[str, str], ...] = (
    ("gen_ai.operation.name", "gen_ai.operation.name"),
    ("gen_ai.provider.name", "gen_ai.provider.name"),
    ("gen_ai.request.model", "gen_ai.request.model"),
    ("gen_ai.response.model", "gen_ai.response.model"),
    ("gen_ai.usage.input_tokens", "gen_ai.usage.input_tokens"),
    ("gen_ai.usage.output_tokens", "gen_ai.usage.output_tokens"),
    ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    ("gen_ai.server.time_to_first_token_ms", "gen_ai.server.time_to_first_token_ms"),
    ("llmgw.provider", "provider"),
    ("error.type", "error.type"),
)
# Only with `--trace-content`: what the client sent and what it got (truncated by the router stage).
CONTENT_TAGS: tuple[tuple[str, str], ...] = (
    (wire.INPUT_MESSAGES_KEY, wire.INPUT_MESSAGES_KEY),
    (wire.OUTPUT_MESSAGES_KEY, wire.OUTPUT_MESSAGES_KEY),
)


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go and how many requests are traced; None in the translator means no tracing."""

    collector_host: str
    collector_port: int
    sampling_percent: float = 100.0
    sampling_by_gateway: Mapping[str, float] = field(default_factory=dict)  # "<ns>/<name>" -> percent
    record_content: bool = False  # prompts and completions as span attributes (explicit opt-in)

    @classmethod
    def parse(
        cls, *, endpoint: str, sampling: list[str] | None = None, record_content: bool = False
    ) -> TracingSettings:
        """From `--otlp-endpoint HOST:PORT` and `--trace-sampling [NS/NAME=]PERCENT` (repeatable).

        Raises ValueError with a message naming the option.
        """
        host, sep, port = endpoint.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--otlp-endpoint {endpoint!r}: expected HOST:PORT (OTLP/gRPC, e.g. localhost:4317)")
        default = 100.0
        by_gateway: dict[str, float] = {}
        for item in sampling or []:
            gateway, eq, value = item.rpartition("=")
            try:
                percent = float(value)
            except ValueError:
                raise ValueError(f"--trace-sampling {item!r}: expected [NAMESPACE/NAME=]PERCENT") from None
            if not 0.0 <= percent <= 100.0:
                raise ValueError(f"--trace-sampling {item!r}: the percentage must be between 0 and 100")
            if not eq:
                default = percent
            elif gateway.count("/") == 1:
                by_gateway[gateway] = percent
            else:
                raise ValueError(f"--trace-sampling {item!r}: name the Gateway as NAMESPACE/NAME")
        return cls(host, int(port), default, by_gateway, record_content)

    def sampling_for(self, gateway: str) -> float:
        return self.sampling_by_gateway.get(gateway, self.sampling_percent)


def hcm_tracing(settings: TracingSettings, *, gateway: str) -> dict[str, Any]:
    """The HCM `tracing` block of a listener of `gateway`."""
    return {
        "random_sampling": {"value": settings.sampling_for(gateway)},
        "spawn_upstream_span": True,  # one client span per upstream attempt
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": _T + "envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": duration(2)},
                "service_name": SERVICE_NAME,
            },
        },
        "custom_tags": [
            {"tag": "gateway", "literal": {"value": gateway}},
            {  # the provider Envoy picked: on each attempt span, so failover names both
                "tag": "llmgw.upstream.provider",
                "metadata": {
                    "kind": {"host": {}},
                    "metadata_key": {"key": names.METADATA_NAMESPACE, "path": [{"key": names.PROVIDER_KEY}]},
                },
            },
            *(
                {
                    "tag": tag,
                    "metadata": {
                        "kind": {"request": {}},
                        "metadata_key": {"key": names.METADATA_NAMESPACE, "path": [{"key": key}]},
                    },
                }
                for tag, key in GEN_AI_TAGS + (CONTENT_TAGS if settings.record_content else ())
            ),
        ],
    }


def collector_cluster(settings: TracingSettings) -> dict[str, Any]:
    """The OTLP/gRPC collector (plaintext HTTP/2; DNS names are resolved)."""
    return {
        "name": OTLP_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": duration(2),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": OTLP_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": settings.collector_host,
                                        "port_value": settings.collector_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
