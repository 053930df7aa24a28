"""Model-server load from a Prometheus scrape: queue depth, running requests, KV-cache utilization.

Metric names per engine (chosen by the pool's `inference.networking.k8s.io/engine-type`
label value, vLLM by default), the same the GIE reference picker reads:
vLLM `vllm:num_requests_waiting`, `vllm:num_requests_running`,
`vllm:kv_cache_usage_perc` (older vLLM: `vllm:gpu_cache_usage_perc`); SGLang
`sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`; TGI
`tgi_queue_size`, `tgi_batch_current_size` (no KV gauge: 0). A gauge with
several series (one per model or LoRA adapter) is summed (queues) or maxed
(utilization).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

ENGINE_LABEL = "inference.networking.k8s.io/engine-type"


@dataclass(frozen=True)
class EngineMetrics:
    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...]


ENGINES: dict[str, EngineMetrics] = {
    "vllm": EngineMetrics(
        waiting=("vllm:num_requests_waiting",),
        running=("vllm:num_requests_running",),
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    ),
    "sglang": EngineMetrics(
        waiting=("sglang:num_queue_reqs",), running=("sglang:num_running_reqs",), kv_usage=("sglang:token_usage",)
    ),
    "tgi": EngineMetrics(waiting=("tgi_queue_size",), running=("tgi_batch_current_size",), kv_usage=()),
}
DEFAULT_ENGINE = "vllm"
# vLLM's LoRA adapter gauge: labels running_lora_adapters, waiting_lora_adapters, max_lora.
LORA_INFO = "vllm:lora_requests_info"


@dataclass(frozen=True)
class PodLoad:
    """One endpoint's load as last scraped; `at` is time.monotonic() of the scrape."""

    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0  # 0..1
    at: float = 0.0
    # vLLM `vllm:lora_requests_info` (its newest sample): adapters running and waiting, and how
    # many it can hold at once (0: unknown).
    lora_running: frozenset[str] = frozenset()
    lora_waiting: frozenset[str] = frozenset()
    max_lora: int = 0


def parse_load(text: str, *, engine: str = DEFAULT_ENGINE, at: float = 0.0) -> PodLoad:
    """The load in a Prometheus text exposition; raises ValueError on text that is not one."""
    names = ENGINES.get(engine, ENGINES[DEFAULT_ENGINE])
    samples: dict[str, list[float]] = {}
    lora: tuple[float, dict[str, str]] | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(float(sample.value))
            if sample.name == LORA_INFO and (lora is None or sample.value >= lora[0]):
                lora = (float(sample.value), dict(sample.labels))

    def first(candidates: tuple[str, ...], combine: str) -> float:
        for name in candidates:
            values = samples.get(name)
            if values:
                return sum(values) if combine == "sum" else max(values)
        return 0.0

    labels = lora[1] if lora else {}
    try:
        max_lora = int(labels.get("max_lora", "0") or 0)
    except ValueError:
        max_lora = 0
    return PodLoad(
        waiting=first(names.waiting, "sum"),
        running=first(names.running, "sum"),
        kv_usage=min(max(first(names.kv_usage, "max"), 0.0), 1.0),
        at=at,
        lora_running=_adapters(labels.get("running_lora_adapters", "")),
        lora_waiting=_adapters(labels.get("waiting_lora_adapters", "")),
        max_lora=max_lora,
    )


def _adapters(value: str) -> frozenset[str]:
    return frozenset(a.strip() for a in value.split(",") if a.strip())
