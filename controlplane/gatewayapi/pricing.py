"""`pricing` on an AIBackend provider: negotiated or self-hosted prices over the catalog's (extproc/cost.py).

    pricing:
      - {input: 0.5, output: 1.5, cacheRead: 0.05, cacheWrite: 0.6}   # USD per million tokens, every model
      - {model: my-llama, input: 0.1, output: 0.2}                     # this model only

An llmgw field (agentgateway's backend has no prices): in an
AgentgatewayBackend it is reported as an unknown field.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from controlplane.ir import PriceIR

_FIELDS = {"model", "input", "output", "cacheRead", "cacheWrite"}


class _Ctx(Protocol):
    def fail(self, fld: str, message: str) -> None: ...


def parse_pricing(ctx: _Ctx, where: str, raw: Any) -> tuple[PriceIR, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        ctx.fail(where, "must be a list of prices ({model?, input, output, cacheRead?, cacheWrite?})")
        return ()
    out: list[PriceIR] = []
    models: set[str | None] = set()
    for i, entry in enumerate(raw):
        path = f"{where}[{i}]"
        if not isinstance(entry, dict):
            ctx.fail(path, "must be a mapping")
            continue
        for key in entry:
            if key not in _FIELDS:
                ctx.fail(f"{path}.{key}", f"is not a field of a price ({', '.join(sorted(_FIELDS))})")
        model = entry.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            ctx.fail(f"{path}.model", "must be a non-empty string")
            continue
        if model in models:
            ctx.fail(f"{path}.model", "has a price already" if model else "a second price for every model")
            continue
        values = {}
        for key in ("input", "output", "cacheRead", "cacheWrite"):
            value = entry.get(key)
            if value is None:
                if key in ("input", "output"):
                    ctx.fail(f"{path}.{key}", "is required (USD per million tokens)")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                ctx.fail(f"{path}.{key}", "must be a number of USD per million tokens, at least 0")
                continue
            values[key] = float(value)
        if "input" not in values or "output" not in values:
            continue
        models.add(model)
        out.append(
            PriceIR(
                input=values["input"],
                output=values["output"],
                cache_read=values.get("cacheRead"),
                cache_write=values.get("cacheWrite"),
                model=model,
            )
        )
    return tuple(out)
