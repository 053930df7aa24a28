"""The router stage's endpoint picking for InferencePools without an endpoint picker of their own.

Which pool a request goes to: the pool of the route matched on its headers, or
else (routes that match on `x-gateway-model-name`) the pool whose route names the
body's model. The InferenceObjective named by `x-gateway-inference-objective`
sets its priority (0 without one); under saturation a priority below the
pool's highest is shed with a 429 in the client's schema (scheduler.py). The
pick travels as `x-gateway-destination-endpoint` (best first, then fallbacks),
which the pool's cluster obeys (controlplane/xds/inference_pool.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from extproc import wire
from extproc.contract import ExtprocConfig
from extproc.picker.scheduler import Decision
from extproc.picker.scraper import LoadBoard

OBJECTIVE_HEADER = wire.OBJECTIVE_HEADER
# How long a request whose priority is shed under saturation waits for the pool to have room
# (re-picked after each scrape) before it is refused; 0 refuses at once. At most 3 s: the
# router stage's ext_proc message timeout is 5 s (controlplane/xds/extproc_filters.py).
MAX_QUEUE_SECONDS = 3.0
QUEUE_SECONDS = min(float(os.environ.get("LLMGW_PICKER_QUEUE_SECONDS", "1.0")), MAX_QUEUE_SECONDS)

PICKS = Counter(
    "llmgw_inference_pool_picks",
    "Requests llmgw's endpoint picker sent to a pool's endpoint, by pool, objective and whether it was saturated",
    ("pool", "objective", "saturated"),
)
SHEDS = Counter(
    "llmgw_inference_pool_sheds",
    "Requests llmgw's endpoint picker refused (429) because the pool was saturated and their priority was low",
    ("pool", "objective"),
)


QUEUED = Histogram(
    "llmgw_inference_pool_queue_seconds",
    "Time a low-priority request waited in llmgw's picker for a saturated pool, by outcome (picked or shed)",
    ("pool", "objective", "outcome"),
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


@dataclass(frozen=True)
class PoolPick:
    pool: str
    decision: Decision
    objective: str = ""  # the objective label: the request's, if the pool knows it


def pool_of(config: ExtprocConfig, *, gateway: str, route_name: str | None, model: str) -> tuple[str, str] | None:
    """(Envoy route, pool) of the llmgw-picked pool this request goes to, if any.

    A request matched on its headers to a pool route stays with that pool (one with an
    endpoint picker of its own: llmgw does not pick). Otherwise the route whose exact
    model-header match names the body's model (Envoy matches again once the router stage
    set the header). An approximation of Envoy's second match: it does not compare paths,
    so a model route on the same path as a pool route matched without the model is missed.
    """
    route = route_name if route_name in config.pool_routes else None
    if route is None and model:
        route = config.pool_models.get(gateway, {}).get(model)
    pool = config.pool_routes.get(route) if route else None
    return (route, pool) if route and pool in config.pools else None


def pick_for(
    board: LoadBoard,
    config: ExtprocConfig,
    *,
    pool: str,
    objective: str,
    prefix: list[bytes] | None = None,
    record: bool = True,
    model: str = "",
) -> PoolPick:
    """One pick; `record`: count it in the metrics now (False when a shed request may still queue)."""
    spec = config.pools.get(pool)
    if spec is None:
        return PoolPick(pool, Decision(reason=f"InferencePool {pool} is not configured"))
    known = objective if objective in spec.objectives else ""
    priority = spec.objectives.get(objective, 0)
    top = max(spec.objectives.values(), default=0)
    decision = board.pick(
        list(spec.endpoints),
        priority=priority,
        top_priority=max(top, 0),
        engine=spec.engine,
        prefix=prefix,
        model=model,
    )
    picked = PoolPick(pool, decision, known)
    if record:
        record_pick(picked)
    return picked


def record_pick(picked: PoolPick) -> None:
    if picked.decision.shed:
        SHEDS.labels(picked.pool, picked.objective).inc()
    elif picked.decision.endpoints:
        PICKS.labels(picked.pool, picked.objective, "true" if picked.decision.saturated else "false").inc()


async def pick_queued(
    board: LoadBoard,
    config: ExtprocConfig,
    *,
    pool: str,
    objective: str,
    prefix: list[bytes] | None = None,
    wait_s: float | None = None,
    model: str = "",
) -> PoolPick:
    """For a request just shed: wait for room (a new scrape each round) up to `wait_s`, then pick or shed.

    A higher priority arriving meanwhile is picked at once, so it goes first.
    """
    wait = QUEUE_SECONDS if wait_s is None else wait_s
    started = time.monotonic()
    picked = pick_for(board, config, pool=pool, objective=objective, prefix=prefix, record=False, model=model)
    while picked.decision.shed:
        left = wait - (time.monotonic() - started)
        if left <= 0:
            break
        try:
            await asyncio.wait_for(board.wait_scraped(1), left)
        except TimeoutError:
            break
        picked = pick_for(board, config, pool=pool, objective=objective, prefix=prefix, record=False, model=model)
    outcome = "shed" if picked.decision.shed else "picked"
    QUEUED.labels(pool, picked.objective, outcome).observe(time.monotonic() - started)
    record_pick(picked)
    return picked
