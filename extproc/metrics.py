"""GenAI metrics (OpenTelemetry semantic-convention names, `llmgw_` prefix).

Workers are separate processes, so prometheus_client runs in multiprocess
mode: the supervisor sets PROMETHEUS_MULTIPROC_DIR and serves the merged view
on :15020/metrics. Emitted in one place (`record`), from normalized Usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from extproc.usage import Usage

LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gateway",
    "route",
    "backend",
)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

TOKEN_USAGE = Histogram(
    "llmgw_gen_ai_client_token_usage",
    "Tokens used per request (gen_ai.client.token.usage)",
    (*LABELS, "gen_ai_token_type"),
    buckets=TOKEN_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "llmgw_gen_ai_server_request_duration",
    "Time to last byte, seconds (gen_ai.server.request.duration)",
    LABELS,
    buckets=DURATION_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "llmgw_gen_ai_server_time_to_first_token",
    "Time to the first streamed chunk, seconds (gen_ai.server.time_to_first_token)",
    LABELS,
    buckets=TTFT_BUCKETS,
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "llmgw_gen_ai_server_time_per_output_token",
    "Time per output token after the first, seconds (gen_ai.server.time_per_output_token)",
    LABELS,
    buckets=TPOT_BUCKETS,
)

REQUEST_ATTEMPTS = Histogram(
    "llmgw_gen_ai_server_request_attempts",
    "Upstream attempts per request (failover: more than 1); provider labels name the one that answered",
    LABELS,
    buckets=(1, 2, 3, 4, 5, 8),
)


INTERRUPTED_STREAMS = Counter(
    "llmgw_gen_ai_server_interrupted_streams",
    "Responses cut after they started (provider reset, client gone); their usage so far is recorded as usual",
    LABELS,
)


COST = Counter(
    "llmgw_gen_ai_cost_usd",
    "What successful requests cost in USD, priced from their usage (extproc/cost.py)",
    LABELS,
)


@dataclass(frozen=True)
class RequestLabels:
    operation: str
    provider: str
    request_model: str
    response_model: str
    gateway: str
    route: str
    backend: str

    def values(self) -> tuple[str, ...]:
        return (
            self.operation,
            self.provider,
            self.request_model,
            self.response_model,
            self.gateway,
            self.route,
            self.backend,
        )


def record(
    *,
    labels: RequestLabels,
    usage: Usage | None,
    duration_s: float,
    ttft_s: float | None,
    streamed_for_s: float | None,
    attempts: int = 1,
    interrupted: bool = False,
    cost_usd: float | None = None,
) -> None:
    values = labels.values()
    if cost_usd:
        COST.labels(*values).inc(cost_usd)
    if interrupted:
        INTERRUPTED_STREAMS.labels(*values).inc()
    REQUEST_DURATION.labels(*values).observe(duration_s)
    REQUEST_ATTEMPTS.labels(*values).observe(attempts)
    if ttft_s is not None:
        TIME_TO_FIRST_TOKEN.labels(*values).observe(ttft_s)
    if usage is None:
        return
    for token_type, count in (
        ("input", usage.input),
        ("output", usage.output),
        ("input_cache_read", usage.cache_read),
        ("input_cache_write", usage.cache_write),
    ):
        if count is not None:
            TOKEN_USAGE.labels(*values, token_type).observe(count)
    if streamed_for_s is not None and usage.output and usage.output > 1:
        TIME_PER_OUTPUT_TOKEN.labels(*values).observe(streamed_for_s / (usage.output - 1))
