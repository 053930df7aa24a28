"""results.json -> results.md (tables, targets) and ratios.txt (one `name: value` per line).

Why ratios are medians of per-round ratios: the machine is shared and noisy, so
two systems measured in the same round are comparable while two rounds are
not; the ratio is taken inside each round first, then the median over rounds.
Single-system figures are the median of the rounds with (min-max).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Getter = Callable[[Row], float | None]

TARGETS = [
    # (ratio name, comparison, limit, the wording): issue 17
    ("llmgw added p50 latency ms (c=1)", "<", 1.0, "added p50 latency at c=1 < 1.0 ms (OpenAI route)"),
    ("llmgw added ttft ms (c=1)", "<", 2.0, "added time to first token at c=1 < 2 ms"),
    ("llmgw/Envoy cpu per request", "<=", 6.0, "CPU per request <= 6x plain Envoy's (OpenAI route)"),
    ("llmgw-anthropic/Envoy cpu per request", "<=", 12.0, "CPU per request <= 12x plain Envoy's (OpenAI -> Anthropic)"),
    ("llmgw/LiteLLM throughput", ">=", 12.0, "non-streaming throughput >= 12x LiteLLM"),
    ("llmgw/Portkey throughput", ">=", 1.0, "non-streaming throughput >= Portkey's"),
    ("llmgw/LiteLLM streams per second", ">=", 12.0, "streaming >= 12x LiteLLM streams/s"),
    ("llmgw extproc+controlplane rss MB", "<", 180.0, "extproc workers + control plane < 180 MB RSS under load"),
]


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _values(rows: list[Row], get: Getter) -> list[float]:
    out = []
    for row in rows:
        try:
            v = get(row)
        except (KeyError, TypeError, ZeroDivisionError):
            v = None
        if v is not None and not math.isnan(v):
            out.append(float(v))
    return out


def stat(rows: list[Row], get: Getter) -> str:
    """'median (min-max)' over rounds, or the single value."""
    vals = _values(rows, get)
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}-{fmt(max(vals))})"


def med(rows: list[Row], get: Getter) -> float | None:
    vals = _values(rows, get)
    return statistics.median(vals) if vals else None


def total(key: str) -> Getter:
    """Sum over every process role of a per-role dict (the whole system's CPU)."""
    return lambda row: sum(row[key].values()) if row.get(key) else None


def role(key: str, name: str, scale: float = 1.0) -> Getter:
    return lambda row: row[key].get(name, 0.0) * scale if row.get(key) is not None else None


def field(name: str, scale: float = 1.0) -> Getter:
    return lambda row: row[name] * scale if row.get(name) is not None else None


def paired(
    a: list[Row], b: list[Row], get_a: Getter, get_b: Getter, op: Callable[[float, float], float]
) -> float | None:
    """Median over rounds of op(a, b), pairing rows of the same round."""
    by_round = {r["round"]: r for r in b}
    vals = []
    for row in a:
        other = by_round.get(row["round"])
        if other is None:
            continue
        try:
            x, y = get_a(row), get_b(other)
        except (KeyError, TypeError):
            continue
        if x is None or y is None:
            continue
        try:
            vals.append(op(x, y))
        except ZeroDivisionError:
            continue
    return statistics.median(vals) if vals else None


def _div(x: float, y: float) -> float:
    return x / y


def _sub(x: float, y: float) -> float:
    return x - y


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about, by the names a script greps for."""
    sys_by = {s["key"]: s for s in results["systems"]}

    def rows(key: str) -> list[Row]:
        s = sys_by.get(key)
        return s["rounds"] if s and s["available"] else []

    out: dict[str, float | None] = {}
    for gw in ("llmgw", "llmgw-anthropic"):
        g, lite, env, direct = rows(gw), rows("litellm"), rows("envoy"), rows("direct")
        out[f"{gw}/LiteLLM throughput"] = paired(g, lite, field("json_rps"), field("json_rps"), _div)
        out[f"{gw}/Envoy cpu per request"] = paired(g, env, total("json_cpu_ms"), total("json_cpu_ms"), _div)
        out[f"{gw} gateway cpu / LiteLLM cpu per request"] = paired(
            g, lite, total("json_cpu_ms"), total("json_cpu_ms"), _div
        )
        out[f"{gw} added p50 latency ms (c=1)"] = paired(g, direct, field("c1_p50"), field("c1_p50"), _sub)
        out[f"{gw}/LiteLLM streams per second"] = paired(g, lite, field("streams_per_s"), field("streams_per_s"), _div)
        baseline = "ttft_anthropic_p50" if gw == "llmgw-anthropic" else "ttft_p50"
        out[f"{gw} added ttft ms (c=1)"] = paired(g, direct, field("ttft_p50"), field(baseline), _sub)
        hwm = sys_by.get(gw, {}).get("hwm_kb") or {}
        out[f"{gw} extproc+controlplane rss MB"] = (
            (hwm.get("extproc", 0) + hwm.get("controlplane", 0)) / 1024 if "extproc" in hwm else None
        )
    pk, g, env, direct = rows("portkey"), rows("llmgw"), rows("envoy"), rows("direct")
    out["llmgw/Portkey throughput"] = paired(g, pk, field("json_rps"), field("json_rps"), _div)
    out["llmgw/Portkey streams per second"] = paired(g, pk, field("streams_per_s"), field("streams_per_s"), _div)
    out["llmgw gateway cpu / Portkey cpu per request"] = paired(g, pk, total("json_cpu_ms"), total("json_cpu_ms"), _div)
    out["Portkey/Envoy cpu per request"] = paired(pk, env, total("json_cpu_ms"), total("json_cpu_ms"), _div)
    out["Portkey added p50 latency ms (c=1)"] = paired(pk, direct, field("c1_p50"), field("c1_p50"), _sub)
    out["Portkey added ttft ms (c=1)"] = paired(pk, direct, field("ttft_p50"), field("ttft_p50"), _sub)
    out["LiteLLM/Envoy cpu per request"] = paired(
        rows("litellm"), rows("envoy"), total("json_cpu_ms"), total("json_cpu_ms"), _div
    )
    out["llmgw added p50 latency ms (fixed rate)"] = paired(
        rows("llmgw"), rows("direct"), field("rate_p50"), field("rate_p50"), _sub
    )
    out["LiteLLM added p50 latency ms (c=1)"] = paired(
        rows("litellm"), rows("direct"), field("c1_p50"), field("c1_p50"), _sub
    )
    out["LiteLLM added ttft ms (c=1)"] = paired(
        rows("litellm"), rows("direct"), field("ttft_p50"), field("ttft_p50"), _sub
    )
    return out


def _check(value: float | None, op: str, limit: float) -> str:
    if value is None:
        return "not measured"
    ok = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return "met" if ok else "MISSED"


def _roles(rows: list[Row], key: str, scale: float = 1.0) -> str:
    names = sorted({r for row in rows for r in (row.get(key) or {})})
    parts = [f"{n} {fmt(med(rows, role(key, n, scale)))}" for n in names if n != "other" or med(rows, role(key, n))]
    return ", ".join(parts) or "-"


def _ttft_base(s: dict[str, Any]) -> Getter:
    """What a system's TTFT is compared with: the direct stream in the upstream API it talks to."""
    return field("ttft_anthropic_p50") if s["key"] == "llmgw-anthropic" else field("ttft_p50")


def _overloaded(rows: list[Row], meta: dict[str, Any]) -> str:
    """A mark when some round could not keep up with the offered rate (its latency is then queueing)."""
    rate = meta.get("rate") or 0
    short = [row["round"] for row in rows if rate and (row.get("rate_achieved") or 0) < 0.95 * rate]
    return f" (overloaded in round {', '.join(map(str, short))})" if short else ""


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    systems = results["systems"]
    live = [s for s in systems if s["available"]]
    r = ratios(results)
    direct = next((s["rounds"] for s in systems if s["key"] == "direct" and s["available"]), [])
    by_round_direct = {row["round"]: row for row in direct}

    def added(get: Getter, base_get: Getter | None = None) -> Getter:
        def inner(row: Row) -> float | None:
            base = by_round_direct.get(row["round"])
            if base is None:
                return None
            a, b = get(row), (base_get or get)(base)
            return None if a is None or b is None else a - b

        return inner

    d = meta["durations_s"]
    out = [
        "# llmgw benchmark results",
        "",
        f"{meta['date']}; llmgw {meta['llmgw_commit']}{' (+ uncommitted changes)' if meta['llmgw_dirty'] else ''}, "
        f"Envoy {meta['envoy']}, LiteLLM {meta['litellm']}, Python {meta['python']}; {meta['cpus']} vCPUs "
        f"(shared), kernel {meta['kernel']}. {'QUICK MODE (smoke test, 1 short round). ' if meta['quick'] else ''}"
        f"{meta['rounds']} interleaved round(s); each figure is the median over rounds with (min-max). "
        + ("The other systems were frozen (SIGSTOP) while one was measured. " if meta.get("freeze") else "")
        + "Compare systems within this run only.",
        "",
        f"Workloads: OpenAI chat request {meta['request_bytes']} B, reply {meta['reply_bytes']} B; streams of "
        f"{meta['stream_chunks']} content events 5 ms apart; a {meta['big_request_bytes']} B request. Durations (s): "
        f"throughput {d['throughput']}, c=1 {d['c1']}, fixed rate {d['rate']}, TTFT {d['ttft']}, streams "
        f"{d['streams']}, 1 MiB {d['big']} (each after a {d['warmup']} s warm-up where it applies).",
        "",
        "Systems not measured: "
        + (", ".join(f"{s['label']}: {s['note']}" for s in systems if not s["available"]) or "none")
        + ". "
        + "Notes: "
        + ("; ".join(f"{s['key']}: {s['note']}" for s in live if s["note"]) or "none")
        + ".",
        "",
        "## Non-streaming chat",
        "",
        f"Max throughput: wrk, 32 connections. Latency at c=1: wrk, one connection. Fixed rate: Poisson arrivals "
        f"at {fmt(meta['rate'])} req/s (open loop, latency from the scheduled send time; same seeded schedule for "
        "every system). CPU: every process of the system, per request, during the c=32 run.",
        "",
        "| system | req/s (c=32) | CPU ms/req | CPU ms/req by process | p50 ms (c=1) | p99 ms (c=1) | added p50 ms "
        f"(c=1) | p50 ms @ {fmt(meta['rate'])}/s | p99 ms @ {fmt(meta['rate'])}/s | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in live:
        rows = s["rounds"]
        errors = sum(int(row.get(k) or 0) for row in rows for k in ("json_errors", "c1_errors", "rate_errors"))
        out.append(
            f"| {s['label']} | {stat(rows, field('json_rps'))} | {stat(rows, total('json_cpu_ms'))} | "
            f"{_roles(rows, 'json_cpu_ms')} | {stat(rows, field('c1_p50'))} | {stat(rows, field('c1_p99'))} | "
            f"{stat(rows, added(field('c1_p50')))} | {stat(rows, field('rate_p50'))}{_overloaded(rows, meta)} | "
            f"{stat(rows, field('rate_p99'))} | {errors} |"
        )
    out += [
        "",
        "Upstream CPU during each system's c=32 run (ms/req; the replay Envoy answers the non-streaming requests): "
        + ", ".join(f"{s['key']} {stat(s['rounds'], field('json_upstream_cpu_ms'))}" for s in live)
        + ". The direct row is the upstream's own rate. Load generator CPU (wrk, ms/req): "
        + ", ".join(f"{s['key']} {stat(s['rounds'], field('json_loadgen_cpu_ms'))}" for s in live)
        + ". Other load on the shared machine during each c=32 run (cores busy outside the benchmark): "
        + ", ".join(f"{s['key']} {stat(s['rounds'], field('json_foreign_cores'))}" for s in live)
        + "; during the streams runs: "
        + ", ".join(
            f"{s['key']} {stat(s['rounds'], field('stream_foreign_cores'))}" for s in live if s["stream_available"]
        )
        + ".",
        "",
        "## Streaming chat",
        "",
        f"Streams/s: h2load, {meta['stream_clients']} concurrent streams (closed loop). TTFT: sequential streams on "
        "one connection, time from sending the request to the first event with content; added TTFT is minus the "
        "direct stream of the same round (for the Anthropic route: the fake's Anthropic stream, which sends "
        "message_start, content_block_start and ping before the first text). CPU per chunk: every "
        f"process of the system during the streams/s run, divided by streams x {meta['stream_chunks']}.",
        "",
        "| system | streams/s | TTFT p50 ms (c=1) | added TTFT ms | stream duration p50 ms | CPU µs/chunk | "
        "CPU µs/chunk by process | CPU ms/stream | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in live:
        rows = s["rounds"]
        if not s["stream_available"]:
            out.append(f"| {s['label']} | not available | | | | | | | |")
            continue
        errors = sum(int(row.get("stream_errors") or 0) for row in rows)
        out.append(
            f"| {s['label']} | {stat(rows, field('streams_per_s'))} | {stat(rows, field('ttft_p50'))} | "
            f"{stat(rows, added(field('ttft_p50'), _ttft_base(s)))} | {stat(rows, field('stream_total_p50'))} | "
            f"{stat(rows, lambda row: sum(row['chunk_cpu_ms'].values()) * 1000)} | "
            f"{_roles(rows, 'chunk_cpu_ms', 1000)} | {stat(rows, total('stream_cpu_ms'))} | {errors} |"
        )
    ext = [s for s in live if any(row.get("json_extproc") for row in s["rounds"])]
    if ext:
        out += [
            "",
            "## ext_proc messages (llmgw)",
            "",
            "From Envoy's ext_proc counters: gRPC streams opened and messages Envoy sent to the extproc, per "
            "request (non-streaming, c=32 run), per stream (streams run) and per 1 MiB request; router = the HCM "
            "filter, attempt = the upstream filter. CPU per message: all llmgw CPU of that run / messages sent.",
            "",
            "| system | workload | router streams | router msgs | attempt streams | attempt msgs | llmgw CPU µs "
            "per message |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in ext:
            rows = s["rounds"]
            for prefix, what in (("json_", "per request"), ("stream_", "per stream"), ("big_", "per 1 MiB request")):
                key = f"{prefix}extproc"

                def count(name: str, key: str = key) -> Getter:
                    return lambda row: (row.get(key) or {}).get(name, 0.0) if row.get(key) else None

                def per_msg(row: Row, prefix: str = prefix, key: str = key) -> float | None:
                    msgs = sum(v for k, v in (row.get(key) or {}).items() if k.endswith("stream_msgs_sent"))
                    cpu = row.get(f"{prefix}cpu_ms")
                    return sum(cpu.values()) * 1000 / msgs if msgs and cpu else None

                out.append(
                    f"| {s['label']} | {what} | {stat(rows, count('router.streams_started'))} | "
                    f"{stat(rows, count('router.stream_msgs_sent'))} | {stat(rows, count('attempt.streams_started'))} "
                    f"| {stat(rows, count('attempt.stream_msgs_sent'))} | {stat(rows, per_msg)} |"
                )
    out += [
        "",
        "## 1 MiB request body",
        "",
        "wrk, 4 connections, non-streaming chat request of 1 MiB (the reply is the usual ~600 B).",
        "",
        "| system | req/s | p50 ms | CPU ms/req | CPU ms/req by process | errors |",
        "|---|---|---|---|---|---|",
    ]
    for s in live:
        rows = s["rounds"]
        errors = sum(int(row.get("big_errors") or 0) for row in rows)
        out.append(
            f"| {s['label']} | {stat(rows, field('big_rps'))} | {stat(rows, field('big_p50'))} | "
            f"{stat(rows, total('big_cpu_ms'))} | {_roles(rows, 'big_cpu_ms')} | {errors} |"
        )
    out += [
        "",
        "## Memory and idle CPU",
        "",
        "Peak RSS: VmHWM of each process at the end of the run (peak over its life), summed per kind; sampled: "
        "the largest sum of VmRSS seen during the loads. Idle CPU: while no load was sent to any system, after "
        "start and after the last round.",
        "",
        "| system | peak RSS MB by process (VmHWM) | sampled peak RSS MB during load | idle CPU ms/s |",
        "|---|---|---|---|",
    ]
    for s in live:
        if not s["hwm_kb"]:
            continue
        hwm = ", ".join(f"{k} {fmt(v / 1024)}" for k, v in sorted(s["hwm_kb"].items()))
        sampled = _roles(s["rounds"], "rss_peak_kb", 1 / 1024)
        idle = ", ".join(f"{k} {fmt(v)}" for k, v in (s["idle_cpu_ms_per_s"] or {}).items()) or "n/a"
        out.append(f"| {s['label']} | {hwm} | {sampled} | {idle} |")
    out += ["", "## Targets (issue 17)", "", "| target | measured | |", "|---|---|---|"]
    for name, op, limit, words in TARGETS:
        out.append(
            f"| {words} | {name}: {fmt(r.get(name))} (target {op} {fmt(limit)}) | {_check(r.get(name), op, limit)} |"
        )
    soak = results.get("soak")
    if soak:
        out += [f"| {t['target']} | {t['figure']} | {t['verdict']} |" for t in soak["targets"]]
        out.append("")
        out.append(f"Soak targets from `bench/soak.py` ({soak['when']}): [soak.md](soak.md).")
    else:
        out += ["| 10-minute soak: RSS flat (< 5 % growth after warm-up), 0 errors | see soak.md | not in this run |"]
    anthropic = next((s for s in systems if s["key"] == "llmgw-anthropic"), None)
    if anthropic is not None:
        out += [
            "",
            "Translation (OpenAI client -> Anthropic provider): "
            + (
                "measured above as " + anthropic["label"]
                if anthropic["available"]
                else f"not available ({anthropic['note']})"
            )
            + ".",
        ]
    failures = [
        f"{s['key']} round {row['round']}: {f}" for s in live for row in s["rounds"] for f in row.get("failures", [])
    ]
    if failures:
        out += ["", "## Failed runs", ""] + [f"- {f}" for f in failures]
    out += [
        "",
        "Ratios for scripts: [ratios.txt](ratios.txt). Chart: [results.png](results.png). "
        "Profile of an extproc worker: [profile.md](profile.md).",
        "",
    ]
    return "\n".join(out)


def ratio_lines(results: dict[str, Any]) -> str:
    return "".join(f"{name}: {fmt(value)}\n" for name, value in ratios(results).items())


def with_soak(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """The soak's verdicts (`soak.json`, written by bench/soak.py into the same directory), if there are any."""
    path = out / "soak.json"
    if path.exists():
        results = {**results, "soak": json.loads(path.read_text())}
    return results


def write(results: dict[str, Any], out: Path) -> None:
    (out / "results.md").write_text(markdown(results))
    (out / "ratios.txt").write_text(ratio_lines(results))


if __name__ == "__main__":  # re-render from a results.json: python bench/report.py bench/results
    import sys

    directory = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    write(with_soak(json.loads((directory / "results.json").read_text()), directory), directory)
