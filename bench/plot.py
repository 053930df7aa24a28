"""results.json -> results.png: six panels, one bar per system, min-max whiskers over rounds.

Runs in the bench venv (matplotlib lives there, not in the project's venv):
`bench/.venv-litellm/bin/python bench/plot.py results.json results.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from report import Getter, _values, field, role

ROLE_COLORS = {
    "envoy": "#4c72b0",
    "extproc": "#dd8452",
    "controlplane": "#55a868",
    "litellm": "#c44e52",
    "portkey": "#8172b3",
    "other": "#8c8c8c",
}


def _label(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _bar(ax: Any, systems: list[dict[str, Any]], get: Getter, title: str, unit: str, log: bool = False) -> None:
    labels, meds, lo, hi = [], [], [], []
    for s in systems:
        vals = sorted(_values(s["rounds"], get))
        if not vals:
            continue
        m = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
        labels.append(s["key"])
        meds.append(m)
        lo.append(m - vals[0])
        hi.append(vals[-1] - m)
    ax.bar(labels, meds, yerr=[lo, hi], capsize=3, color="#4c72b0")
    for i, m in enumerate(meds):
        ax.annotate(_label(m), (i, m), ha="center", va="bottom", fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7, rotation=20)


def _stacked(
    ax: Any, systems: list[dict[str, Any]], key: str, title: str, unit: str, scale: float = 1.0, per_round: bool = True
) -> None:
    labels = [s["key"] for s in systems]
    bottoms = [0.0] * len(systems)
    roles = sorted(
        {
            r
            for s in systems
            for row in (s["rounds"] if per_round else [{key: s.get(key, {})}])
            for r in (row.get(key) or {})
        }
    )
    for name in roles:
        heights = []
        for s in systems:
            if per_round:
                vals = sorted(_values(s["rounds"], role(key, name, scale)))
                heights.append(vals[len(vals) // 2] if vals else 0.0)
            else:
                heights.append((s.get(key) or {}).get(name, 0) * scale)
        ax.bar(labels, heights, bottom=bottoms, label=name, color=ROLE_COLORS.get(name, "#8c8c8c"))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for i, b in enumerate(bottoms):
        ax.annotate(_label(b), (i, b), ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.legend(fontsize=6)


def main(src: str, dst: str) -> None:
    results = json.loads(Path(src).read_text())
    live = [s for s in results["systems"] if s["available"]]
    gateways = [s for s in live if s["key"] != "direct"]
    streaming = [s for s in live if s["stream_available"]]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    meta = results["meta"]
    _bar(axes[0][0], live, field("json_rps"), "non-streaming max throughput (c=32; log scale)", "req/s", log=True)
    _stacked(axes[0][1], gateways, "json_cpu_ms", "CPU per request by process (c=32)", "ms")
    _bar(axes[0][2], live, field("c1_p50"), "p50 latency, c=1 (one connection)", "ms")
    _bar(axes[1][0], streaming, field("streams_per_s"), f"streams/s ({meta['stream_clients']} concurrent)", "1/s")
    _bar(axes[1][1], streaming, field("ttft_p50"), "time to first token p50, c=1", "ms")
    _stacked(axes[1][2], gateways, "hwm_kb", "peak RSS by process (VmHWM)", "MB", scale=1 / 1024, per_round=False)
    rounds = f"{meta['rounds']} round{'s' if meta['rounds'] != 1 else ''}"
    fig.suptitle(
        f"llmgw benchmark {meta['date']} ({rounds}, median with min-max; {meta['cpus']} shared vCPUs)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
