"""Pure picking: least-loaded endpoints first, saturation, and which priorities are shed.

Score (lower is better) = queue weight x waiting requests (normalized by the
queue threshold) + KV weight x KV-cache utilization - prefix weight x the share
of the prompt's leading blocks last sent there (prefix.py), + LoRA weight x (-1 when
the requested model is a LoRA adapter the pod runs, +1 when the pod's adapter slots are
full without it: vLLM's `vllm:lora_requests_info`), plus what this picker sent
since the last scrape (so a burst between scrapes spreads instead of piling on
the endpoint that looked idle). Stale or missing metrics score as "busy but not
full" so a pod that stops answering /metrics is used last, not never.

Saturation follows the GIE reference defaults: every candidate has at least
`queue_threshold` waiting requests or KV utilization at or above
`kv_threshold`. Under saturation a request whose InferenceObjective priority
is below the pool's highest is shed (429 in the client's schema); the highest
priority (and every request when the pool has no objectives) still goes to the
least-loaded endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from extproc.picker.engines import PodLoad

QUEUE_THRESHOLD = 5.0
KV_THRESHOLD = 0.8
QUEUE_WEIGHT = 1.0
KV_WEIGHT = 1.0
PREFIX_WEIGHT = 0.5  # a full prefix match is worth 2.5 waiting requests
LORA_WEIGHT = 0.5  # the requested LoRA adapter loaded there (bonus), or no free adapter slot (malus)
FALLBACKS = 2  # endpoints listed after the best one, for Envoy to retry on


@dataclass(frozen=True)
class Decision:
    endpoints: tuple[str, ...] = ()  # best first; empty: shed or none
    shed: bool = False
    saturated: bool = False
    reason: str = ""


def _fresh(load: PodLoad | None, now: float, stale_after: float) -> PodLoad | None:
    return load if load is not None and now - load.at <= stale_after else None


def score(load: PodLoad | None, *, sent_since_scrape: int = 0) -> float:
    if load is None:
        return QUEUE_WEIGHT * 0.5 + KV_WEIGHT * 0.5 + sent_since_scrape / QUEUE_THRESHOLD
    waiting = load.waiting + sent_since_scrape
    return QUEUE_WEIGHT * waiting / QUEUE_THRESHOLD + KV_WEIGHT * load.kv_usage + load.running / 1000


def lora_cost(load: PodLoad | None, model: str) -> float:
    """-1 when the pod serves adapter `model` already, +1 when it would have to evict one, else 0.

    Only for a `model` some pod reports as a LoRA adapter (the caller checks): a base-model
    request needs no adapter slot.
    """
    if load is None or not model or not (load.lora_running or load.lora_waiting or load.max_lora):
        return 0.0
    if model in load.lora_running or model in load.lora_waiting:
        return -1.0
    if load.max_lora and len(load.lora_running) >= load.max_lora:
        return 1.0
    return 0.0


def is_saturated(load: PodLoad | None, *, sent_since_scrape: int = 0) -> bool:
    """What this picker sent since the scrape counts as waiting: a pool that just got room is not
    flooded by every request that waited for it before the next scrape shows the result."""
    if load is None:
        return False
    return load.waiting + sent_since_scrape >= QUEUE_THRESHOLD or load.kv_usage >= KV_THRESHOLD


def pick(
    candidates: list[str],
    loads: Mapping[str, PodLoad],
    *,
    now: float,
    stale_after: float,
    priority: int = 0,
    top_priority: int = 0,
    sent: Mapping[str, int] | None = None,
    affinity: Mapping[str, float] | None = None,
    model: str = "",
) -> Decision:
    """Endpoints to try (best first) or a shed decision, for one request of `priority`."""
    if not candidates:
        return Decision(reason="the pool has no ready endpoint")
    sent = sent or {}
    affinity = affinity or {}
    fresh = {c: _fresh(loads.get(c), now, stale_after) for c in candidates}
    saturated = all(is_saturated(fresh[c], sent_since_scrape=sent.get(c, 0)) for c in candidates)
    if saturated and priority < top_priority:
        return Decision(shed=True, saturated=True, reason=f"pool saturated; priority {priority} < {top_priority}")
    adapter = bool(model) and any(
        load is not None and (model in load.lora_running or model in load.lora_waiting) for load in fresh.values()
    )
    lora_model = model if adapter else ""
    ranked = sorted(
        candidates,
        key=lambda c: (
            score(fresh[c], sent_since_scrape=sent.get(c, 0))
            - PREFIX_WEIGHT * affinity.get(c, 0.0)
            + LORA_WEIGHT * lora_cost(fresh[c], lora_model),
            c,
        ),
    )
    return Decision(endpoints=tuple(ranked[: 1 + FALLBACKS]), saturated=saturated)
