"""The picker's pure core: metric names per engine, least-loaded order, saturation and shedding."""

from __future__ import annotations

import pytest

from extproc.contract import ExtprocConfig, PoolPickConfig
from extproc.picker.engines import PodLoad, parse_load
from extproc.picker.pools import pool_of
from extproc.picker.scheduler import FALLBACKS, pick

VLLM = """# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 3.0
vllm:num_requests_waiting{model_name="lora-1"} 2.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 7.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="a"} 0.42
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf"} 5.0
vllm:time_to_first_token_seconds_count 5.0
vllm:time_to_first_token_seconds_sum 0.7
"""


def test_vllm_gauges_summed_and_maxed() -> None:
    load = parse_load(VLLM, engine="vllm", at=1.0)
    assert load == PodLoad(waiting=5.0, running=7.0, kv_usage=0.42, at=1.0)


def test_older_vllm_and_other_engines() -> None:
    assert parse_load("vllm:gpu_cache_usage_perc 0.5\n").kv_usage == 0.5
    sglang = "sglang:num_queue_reqs 4\nsglang:num_running_reqs 2\nsglang:token_usage 0.9\n"
    assert parse_load(sglang, engine="sglang") == PodLoad(waiting=4, running=2, kv_usage=0.9)
    assert parse_load("tgi_queue_size 6\ntgi_batch_current_size 3\n", engine="tgi") == PodLoad(waiting=6, running=3)


def test_not_prometheus_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_load("{not metrics")


def _loads(**by_ep: tuple[float, float]) -> dict[str, PodLoad]:
    return {ep.replace("_", "."): PodLoad(waiting=w, kv_usage=kv, at=10.0) for ep, (w, kv) in by_ep.items()}


EPS = ["a", "b", "c", "d"]


def test_least_loaded_first_with_fallbacks() -> None:
    loads = _loads(a=(10, 0.9), b=(0, 0.1), c=(3, 0.2), d=(0, 0.6))
    decision = pick(EPS, loads, now=10.0, stale_after=2.0)
    assert decision.endpoints == ("b", "d", "c")[: 1 + FALLBACKS]
    assert not decision.shed and not decision.saturated


def test_picks_since_the_scrape_spread_a_burst() -> None:
    loads = _loads(a=(0, 0.1), b=(0, 0.1), c=(9, 0.9), d=(9, 0.9))
    decision = pick(EPS, loads, now=10.0, stale_after=2.0, sent={"a": 3})
    assert decision.endpoints[0] == "b"


def test_stale_metrics_rank_after_fresh_idle_pods() -> None:
    loads = _loads(a=(0, 0.0), b=(0, 0.0))
    loads["a"] = PodLoad(at=1.0)  # scraped long ago
    decision = pick(["a", "b"], loads, now=10.0, stale_after=2.0)
    assert decision.endpoints[0] == "b"


def test_saturation_sheds_lower_priorities_only() -> None:
    loads = _loads(a=(6, 0.5), b=(0, 0.85), c=(9, 0.95), d=(5, 0.1))
    low = pick(EPS, loads, now=10.0, stale_after=2.0, priority=0, top_priority=10)
    assert low.shed and low.saturated and not low.endpoints
    high = pick(EPS, loads, now=10.0, stale_after=2.0, priority=10, top_priority=10)
    assert not high.shed and high.saturated and high.endpoints
    no_objectives = pick(EPS, loads, now=10.0, stale_after=2.0)
    assert not no_objectives.shed


def test_one_unsaturated_pod_means_no_shedding() -> None:
    loads = _loads(a=(6, 0.5), b=(0, 0.2))
    decision = pick(["a", "b"], loads, now=10.0, stale_after=2.0, priority=-1, top_priority=0)
    assert decision.endpoints[0] == "b" and not decision.shed


def test_empty_pool() -> None:
    decision = pick([], {}, now=0.0, stale_after=1.0)
    assert not decision.endpoints and not decision.shed


def test_pool_of_keeps_a_matched_pool_route_else_follows_the_model() -> None:
    config = ExtprocConfig(
        version="v",
        pools={"ns/a": PoolPickConfig(endpoints=["1.1.1.1:8000"]), "ns/b": PoolPickConfig()},
        pool_routes={"route-a": "ns/a", "route-b": "ns/b", "route-epp": "ns/epp"},
        pool_models={"ns/gw": {"m-b": "route-b"}},
    )
    # Matched on the headers to a pool route: that pool, whatever the model.
    assert pool_of(config, gateway="ns/gw", route_name="route-a", model="m-b") == ("route-a", "ns/a")
    # Matched to no pool route (only model routes lead to pools): the model's route.
    assert pool_of(config, gateway="ns/gw", route_name=None, model="m-b") == ("route-b", "ns/b")
    assert pool_of(config, gateway="ns/gw", route_name="ai-route", model="m-b") == ("route-b", "ns/b")
    assert pool_of(config, gateway="ns/gw", route_name=None, model="other") is None
    # A pool with its own endpoint picker: llmgw does not pick, even for a model it routes.
    assert pool_of(config, gateway="ns/gw", route_name="route-epp", model="m-b") is None
    assert pool_of(config, gateway="ns/other", route_name="x", model="m-b") is None
    assert ExtprocConfig.from_json(config.to_json()) == config


def test_prefix_blocks_chain_and_affinity() -> None:
    from extproc.picker.prefix import BLOCK_CHARS, PrefixIndex, blocks, prompt_text

    system = "s" * (BLOCK_CHARS * 3)
    body_a = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "a" * BLOCK_CHARS}]}
    body_b = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "b" * BLOCK_CHARS}]}
    a, b = blocks(prompt_text(body_a)), blocks(prompt_text(body_b))
    assert len(a) == 4 and a[:3] == b[:3] and a[3] != b[3]
    assert blocks("x" * (BLOCK_CHARS - 1)) == []
    index = PrefixIndex()
    index.record(a, "pod-1")
    assert index.affinity(b, ["pod-1", "pod-2"]) == {"pod-1": 0.75}
    assert index.affinity(a, ["pod-1"]) == {"pod-1": 1.0}
    # The same block text after a different prefix is a different block.
    assert index.affinity(blocks("t" * BLOCK_CHARS + system), ["pod-1"]) == {}


def test_affinity_wins_ties_but_not_a_queue() -> None:
    idle = _loads(a=(0, 0.1), b=(0, 0.1))
    assert pick(["a", "b"], idle, now=10.0, stale_after=2.0, affinity={"b": 1.0}).endpoints[0] == "b"
    busy_b = _loads(a=(0, 0.1), b=(9, 0.5))
    assert pick(["a", "b"], busy_b, now=10.0, stale_after=2.0, affinity={"b": 1.0}).endpoints[0] == "a"


def test_picks_since_the_scrape_count_towards_saturation() -> None:
    loads = _loads(a=(3, 0.5), b=(9, 0.9))
    assert not pick(["a", "b"], loads, now=10.0, stale_after=2.0, priority=0, top_priority=10).shed
    flooded = pick(["a", "b"], loads, now=10.0, stale_after=2.0, priority=0, top_priority=10, sent={"a": 2})
    assert flooded.shed


LORA = """# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql-lora,chat-lora",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="old",waiting_lora_adapters=""} 1.6e9
"""


def test_lora_adapters_from_the_newest_sample() -> None:
    load = parse_load(LORA)
    assert load.lora_running == frozenset({"sql-lora", "chat-lora"})
    assert load.lora_waiting == frozenset()
    assert load.max_lora == 2


def test_lora_affinity_prefers_the_pod_with_the_adapter_and_avoids_evictions() -> None:
    full = PodLoad(at=10.0, lora_running=frozenset({"x", "y"}), max_lora=2)
    has_it = PodLoad(at=10.0, lora_running=frozenset({"sql-lora"}), max_lora=2)
    free = PodLoad(at=10.0, lora_running=frozenset(), max_lora=2)
    loads = {"full": full, "has": has_it, "free": free}
    order = pick(["full", "free", "has"], loads, now=10.0, stale_after=2.0, model="sql-lora").endpoints
    assert order == ("has", "free", "full")
    # A model no pod reports as an adapter (the base model) needs no adapter slot: no LoRA term.
    assert pick(["full", "free"], loads, now=10.0, stale_after=2.0, model="base").endpoints[0] == "free"
    assert pick(["full", "has"], loads, now=10.0, stale_after=2.0, model="base").endpoints[0] == "full"
