"""The router stage's endpoint picking for InferencePools without an endpoint picker of their own.

Which pool a request goes to: the pool of the route matched on its headers, or
(routes that match on `x-gateway-model-name`) the pool whose route names the
body's model. The InferenceObjective named by `x-gateway-inference-objective`
sets its priority (0 without one); under saturation a priority below the
pool's highest is shed with a 429 in the client's schema (scheduler.py). The
pick travels as `x-gateway-destination-endpoint` (best first, then fallbacks),
which the pool's cluster obeys (controlplane/xds/inference_pool.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from extproc.contract import ExtprocConfig
from extproc.picker.scheduler import Decision
from extproc.picker.scraper import LoadBoard

OBJECTIVE_HEADER = "x-gateway-inference-objective"

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


@dataclass(frozen=True)
class PoolPick:
    pool: str
    decision: Decision


def pool_of(config: ExtprocConfig, *, gateway: str, route_name: str | None, model: str) -> str | None:
    """The llmgw-picked pool this request goes to, if any."""
    by_model = config.pool_models.get(gateway, {}).get(model) if model else None
    if by_model is not None:
        return by_model
    return config.pool_routes.get(route_name) if route_name else None


def pick_for(
    board: LoadBoard, config: ExtprocConfig, *, pool: str, objective: str, prefix: list[bytes] | None = None
) -> PoolPick:
    spec = config.pools.get(pool)
    if spec is None:
        return PoolPick(pool, Decision(reason=f"InferencePool {pool} is not configured"))
    known = objective if objective in spec.objectives else ""
    priority = spec.objectives.get(objective, 0)
    top = max(spec.objectives.values(), default=0)
    decision = board.pick(
        list(spec.endpoints), priority=priority, top_priority=max(top, 0), engine=spec.engine, prefix=prefix
    )
    if decision.shed:
        SHEDS.labels(pool, known).inc()
    elif decision.endpoints:
        PICKS.labels(pool, known, "true" if decision.saturated else "false").inc()
    return PoolPick(pool, decision)
