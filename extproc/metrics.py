"""GenAI metrics (OpenTelemetry semantic-convention names, `llmgw_` prefix).

Workers are separate processes, so prometheus_client runs in multiprocess
mode: the supervisor sets PROMETHEUS_MULTIPROC_DIR and serves the merged view
on :15020/metrics. Emitted in one place (`record`), from normalized Usage.

Every request the router stage sees is counted, failures included:
`llmgw_requests_total` carries the status, its class and the semconv
`error.type` (empty on success), and the request duration carries
`error_type` too. Upstream attempts are counted per provider (failover shows
as attempts on two providers), failed attempts with their error type.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from extproc.usage import Usage

# Who called (extproc/identity.py): empty unless the route's policy allowlists the field
# (`traffic.callerIdentity.metricLabels`), so cardinality stays what the operator chose. An empty
# label is the same as no label in PromQL.
CALLER_FIELDS = ("user", "team", "tenant", "key_id")
LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gateway",
    "route",
    "backend",
    *(f"caller_{f}" for f in CALLER_FIELDS),
)
ATTEMPT_LABELS = ("backend", "provider", "gen_ai_provider_name")
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
    "Time to last byte, seconds (gen_ai.server.request.duration); error_type empty on success",
    (*LABELS, "error_type"),
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


REQUESTS = Counter(
    "llmgw_requests",
    "Requests the gateway answered on AI routes, errors included (status, its class, semconv error.type)",
    (*LABELS, "status", "status_class", "error_type"),
)
UPSTREAM_ATTEMPTS = Counter(
    "llmgw_upstream_attempts",
    "Upstream attempts per provider (retries and failover included)",
    ATTEMPT_LABELS,
)
UPSTREAM_ATTEMPT_ERRORS = Counter(
    "llmgw_upstream_attempt_errors",
    "Failed upstream attempts per provider on failover backends (error_type: HTTP status or no_response)",
    (*ATTEMPT_LABELS, "error_type"),
)
CREDENTIAL_FAILURES = Counter(
    "llmgw_credential_failures",
    "Provider credentials the gateway could not obtain or refresh (Entra ID, GCP, AWS, Secrets)",
    ATTEMPT_LABELS,
)

CREDENTIAL_REFRESH_FAILURES = Counter(
    "llmgw_credential_refresh_failures",
    "Background token refreshes that failed (Entra ID, GCP); requests keep the valid token meanwhile",
)
EXTPROC_CONFIG_APPLIED = Gauge(
    "llmgw_extproc_config_applied_timestamp_seconds",
    "When each live extproc worker applied its newest config (pid label: one series per worker)",
    multiprocess_mode="liveall",
)
EXTPROC_CONFIG_REJECTED = Counter(
    "llmgw_extproc_config_rejected",
    "Configs an extproc worker could not decode (it keeps its last good one)",
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
    caller: tuple[str, ...] = ("",) * len(CALLER_FIELDS)  # CALLER_FIELDS values, "" where not allowlisted

    def values(self) -> tuple[str, ...]:
        return (
            self.operation,
            self.provider,
            self.request_model,
            self.response_model,
            self.gateway,
            self.route,
            self.backend,
            *self.caller,
        )


def status_class(status: int) -> str:
    """`2xx` .. `5xx`; `none` when no response status was ever known (the client went away first)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


def record(
    *,
    labels: RequestLabels,
    usage: Usage | None,
    duration_s: float,
    ttft_s: float | None,
    streamed_for_s: float | None,
    attempts: int = 1,
    interrupted: bool = False,
    status: int = 200,
    error_type: str = "",
    cost_usd: float | None = None,
) -> None:
    """One finished request: counted whatever its outcome; latency-per-token and usage as far as known."""
    values = labels.values()
    if cost_usd:
        COST.labels(*values).inc(cost_usd)
    if interrupted:
        INTERRUPTED_STREAMS.labels(*values).inc()
    REQUESTS.labels(*values, str(status), status_class(status), error_type).inc()
    REQUEST_DURATION.labels(*values, error_type).observe(duration_s)
    if attempts > 0:
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


def record_attempt(*, backend: str, provider: str, kind: str) -> None:
    """One upstream attempt to `provider` (its id) of `backend`; `kind` is its gen_ai.provider.name.

    Also makes the provider's credential-failure series exist at 0, so a dashboard shows
    "no failures" rather than "no data" until the first one.
    """
    UPSTREAM_ATTEMPTS.labels(backend, provider, kind).inc()
    CREDENTIAL_FAILURES.labels(backend, provider, kind)


def record_attempt_error(*, backend: str, provider: str, kind: str, error_type: str) -> None:
    UPSTREAM_ATTEMPT_ERRORS.labels(backend, provider, kind, error_type).inc()


def record_credential_failure(*, backend: str, provider: str, kind: str) -> None:
    CREDENTIAL_FAILURES.labels(backend, provider, kind).inc()


# --- prompt guards (extproc/policies/guards) ------------------------------------------------------
GUARDRAIL_CHECKS = Counter(
    "llmgw_guardrail_checks",
    "Prompt guard decisions: guardrail kind, phase (request | response), action "
    "(allow | mask | reject | fail_open | error), route",
    ("guardrail", "phase", "action", "route"),
)
