"""llmgw benchmark harness: start every system, drive the workloads in interleaved rounds, write results.

Run it through `bench/run` (which installs wrk, h2load and LiteLLM first).

Why it is shaped like this:
- All systems run side by side for the whole benchmark and each round visits
  every system once per workload phase (the starting system rotates per round),
  so a slow minute on this shared 2-core machine hits every system alike; each
  figure is the median of the rounds, with min-max.
- While one system is measured the others are frozen (SIGSTOP), so their
  background work does not take CPU from it (see `Frozen`).
- The fixed offered rate is chosen after round 1's throughput phase (a third of the
  slowest system's maximum) unless `--rate` says, so it is below every limit.
- CPU is read from /proc (utime+stime of every process in each system's tree)
  around each measured run; RSS is sampled during the load and VmHWM read at the end.
- Everything started is in one `Launcher`, which stops it all on exit, error,
  Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import openloop
import profiling
import report
import streams
from procs import CLK_TCK, Launcher, RssSampler, cmdline, cpu_ms_by_role, descendants, hwm_by_role, snapshot
from systems import System, all_systems
from upstream import (
    JSON_MODEL,
    STREAM_CHUNKS,
    STREAM_MODEL,
    Upstreams,
    anthropic_body,
    big_body,
    chat_body,
    envoy_path,
    start_upstreams,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class Durations:
    warmup: float
    throughput: float
    c1: float
    rate: float
    ttft: float
    streams: float
    big: float


FULL = Durations(warmup=3, throughput=10, c1=8, rate=10, ttft=8, streams=10, big=8)
QUICK = Durations(warmup=1, throughput=3, c1=3, rate=3, ttft=3, streams=3, big=3)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    """One benchmark run: the systems, the bodies, and the per-round results."""

    def __init__(self, args: argparse.Namespace, launcher: Launcher, work: Path) -> None:
        self.args = args
        self.launcher = launcher
        self.work = work
        self.d = QUICK if args.quick else FULL
        self.systems: list[System] = []
        self.up: Upstreams | None = None
        self.rate: float | None = args.rate
        self.json_body = work / "chat.json"
        self.stream_body = work / "stream.json"
        self.big_body = work / "big.json"
        self.json_body.write_bytes(chat_body(model=JSON_MODEL))
        self.stream_body.write_bytes(chat_body(model=STREAM_MODEL, stream=True))
        self.big_body.write_bytes(big_body())
        self.rounds: dict[str, list[dict[str, Any]]] = {}
        self.idle: dict[str, dict[str, float]] = {}

    # --- setup -----------------------------------------------------------------------------

    def start(self) -> None:
        envoy = envoy_path(self.args.llmgw_py)
        self.up = start_upstreams(self.launcher, py=self.args.llmgw_py, repo=REPO, work=self.work, envoy=envoy)
        wanted = set(self.args.systems.split(",")) if self.args.systems else None
        for system in all_systems(litellm_bin=self.args.litellm_bin, portkey_dir=self.args.portkey_dir):
            if wanted is not None and system.key not in wanted:
                continue
            _log(f"starting {system.key}")
            try:
                system.start(self.launcher, self.up, work=self.work, py=self.args.llmgw_py, envoy=envoy, repo=REPO)
                if system.available:
                    system.probe()
            except Exception as exc:  # a system that cannot start is a finding, not a crash
                system.available = False
                system.note = f"did not start: {str(exc).strip().splitlines()[0][:300]}"
                _log(f"{system.key}: {system.note}")
                for root in system.roots:
                    self.launcher.stop(root)
                system.roots = []
            if system.note:
                _log(f"{system.key}: {system.note}")
            self.systems.append(system)
            self.rounds[system.key] = []

    def measure_idle(self, seconds: float = 5.0, *, when: str = "start") -> None:
        """Background CPU of every system while nothing is sent to any (at start and again at the end)."""
        live = [s for s in self.systems if s.available and s.roots]
        befores = {s.key: snapshot(s.root_pids, s.classify) for s in live}
        time.sleep(seconds)
        for s in live:
            cpu = cpu_ms_by_role(befores[s.key], snapshot(s.root_pids, s.classify))
            self.idle.setdefault(s.key, {})[when] = sum(cpu.values()) / seconds

    # --- measuring -------------------------------------------------------------------------

    def _upstream_pids(self) -> list[int]:
        assert self.up is not None
        return [self.up.fake.pid, self.up.replay.pid]

    def _measured(self, system: System, run: Callable[[], load.LoadResult]) -> Measured:
        """Run `run` with CPU snapshots of the system, the upstreams and the machine around it, and RSS sampling.

        `foreign_cores` is what the rest of the machine (other users of this shared VM) burned meanwhile:
        all busy time in /proc/stat minus the system's, the upstreams' and the load generator's.
        """
        up_classify: Callable[[int, str], str] = lambda _pid, _cmd: "upstream"  # noqa: E731
        before = snapshot(system.root_pids, system.classify)
        up_before = snapshot(self._upstream_pids(), up_classify)
        counters_before = system.extproc_counters()
        busy_before, kids_before, t0 = machine_busy_ms(), children_cpu_ms(), time.monotonic()
        with RssSampler(system.root_pids, system.classify) as rss:
            result = run()
        wall_ms = (time.monotonic() - t0) * 1000
        busy, loadgen = machine_busy_ms() - busy_before, children_cpu_ms() - kids_before
        cpu = cpu_ms_by_role(before, snapshot(system.root_pids, system.classify))
        up_cpu = sum(cpu_ms_by_role(up_before, snapshot(self._upstream_pids(), up_classify)).values())
        foreign = max(0.0, busy - sum(cpu.values()) - up_cpu - loadgen) / wall_ms
        after = system.extproc_counters()
        counters = {k: v - counters_before.get(k, 0.0) for k, v in after.items() if v - counters_before.get(k, 0.0)}
        return Measured(result, cpu, up_cpu, rss.peak_kb, foreign, loadgen, counters)

    def _record(self, row: dict[str, Any], prefix: str, m: Measured, units: float) -> None:
        """CPU per unit (request, stream, chunk) by role, plus the upstream's, the load generator's and the noise."""
        n = max(units, 1.0)
        row[f"{prefix}cpu_ms"] = {role: ms / n for role, ms in m.cpu.items()}
        row[f"{prefix}upstream_cpu_ms"] = m.upstream_ms / n
        row[f"{prefix}loadgen_cpu_ms"] = m.loadgen_ms / n
        row[f"{prefix}foreign_cores"] = m.foreign_cores
        if m.extproc:
            row[f"{prefix}extproc"] = {k: v / n for k, v in m.extproc.items()}
        _merge_peak(row, m.rss_kb)

    def phase_throughput(self, s: System, row: dict[str, Any]) -> None:
        load.wrk(url=s.json_url, body=self.json_body, connections=32, seconds=self.d.warmup, headers=s.json_headers)
        m = self._measured(
            s,
            lambda: load.wrk(
                url=s.json_url, body=self.json_body, connections=32, seconds=self.d.throughput, headers=s.json_headers
            ),
        )
        row.update(
            json_rps=m.result.rps,
            json_errors=m.result.errors,
            json_p50_c32=m.result.p50_ms,
            json_p99_c32=m.result.p99_ms,
        )
        self._record(row, "json_", m, m.result.requests)

    def phase_c1(self, s: System, row: dict[str, Any]) -> None:
        res = load.wrk(url=s.json_url, body=self.json_body, connections=1, seconds=self.d.c1, headers=s.json_headers)
        row.update(c1_p50=res.p50_ms, c1_p99=res.p99_ms, c1_rps=res.rps, c1_errors=res.errors)

    def phase_rate(self, s: System, row: dict[str, Any]) -> None:
        assert self.rate is not None
        body = self.json_body.read_bytes()
        res = openloop.run(url=s.json_url, body=body, rate=self.rate, seconds=self.d.rate, headers=s.json_headers)
        lat = sorted(res.latencies_ms)
        row.update(
            rate_p50=load.percentile(lat, 0.5) if lat else None,
            rate_p99=load.percentile(lat, 0.99) if lat else None,
            rate_achieved=len(lat) / self.d.rate,
            rate_errors=res.errors,
            rate_client_late_p99=load.percentile(sorted(res.late_ms), 0.99) if res.late_ms else None,
        )

    def phase_ttft(self, s: System, row: dict[str, Any]) -> None:
        samples = streams.ttft(
            url=s.stream_url, body=self.stream_body.read_bytes(), seconds=self.d.ttft, headers=s.stream_headers
        )
        row.update(
            ttft_p50=load.median([x.ttft_ms for x in samples]),
            stream_total_p50=load.median([x.total_ms for x in samples]),
            ttft_n=len(samples),
            stream_events=load.median([float(x.events) for x in samples]),
        )
        assert self.up is not None
        if s.key == "direct" and self.up.anthropic_json is not None:
            # The fake's Anthropic stream has its own cadence (message_start, content_block_start and
            # ping come first, 5 ms apart): the translated system's added TTFT is measured against this.
            body = anthropic_body(model=STREAM_MODEL, stream=True)
            headers = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}
            samples = streams.ttft(
                url=f"{self.up.fake_url}/v1/messages", body=body, seconds=self.d.ttft, headers=headers
            )
            row.update(ttft_anthropic_p50=load.median([x.ttft_ms for x in samples]))

    def phase_streams(self, s: System, row: dict[str, Any]) -> None:
        c = self.args.stream_clients
        h = s.stream_headers
        load.streams(url=s.stream_url, body=self.stream_body, clients=c, seconds=min(2.0, self.d.warmup), headers=h)
        m = self._measured(
            s,
            lambda: load.streams(url=s.stream_url, body=self.stream_body, clients=c, seconds=self.d.streams, headers=h),
        )
        row.update(streams_per_s=m.result.rps, stream_errors=m.result.errors)
        self._record(row, "stream_", m, m.result.requests)
        self._record(row, "chunk_", m, m.result.requests * STREAM_CHUNKS)

    def phase_big(self, s: System, row: dict[str, Any]) -> None:
        h = s.json_headers
        load.wrk(url=s.json_url, body=self.big_body, connections=4, seconds=min(2.0, self.d.warmup), headers=h)
        m = self._measured(
            s, lambda: load.wrk(url=s.json_url, body=self.big_body, connections=4, seconds=self.d.big, headers=h)
        )
        row.update(big_rps=m.result.rps, big_p50=m.result.p50_ms, big_errors=m.result.errors)
        self._record(row, "big_", m, m.result.requests)

    def choose_rate(self) -> None:
        if self.rate is not None:
            return
        rates = [row["json_rps"] for rows in self.rounds.values() for row in rows[:1] if row.get("json_rps")]
        # A third: this shared machine's noise moves a system's maximum by 2x between rounds.
        self.rate = max(4.0, round(min(rates) / 3 / 4) * 4) if rates else 40.0
        _log(f"fixed offered rate: {self.rate:.0f} req/s (a third of the slowest system's maximum in round 1)")

    def run_rounds(self) -> None:
        phases: list[tuple[str, Callable[[System, dict[str, Any]], None], bool]] = [
            ("throughput c=32", self.phase_throughput, False),
            ("latency c=1", self.phase_c1, False),
            ("fixed rate", self.phase_rate, False),
            ("ttft c=1", self.phase_ttft, True),
            (f"streams c={self.args.stream_clients}", self.phase_streams, True),
            ("1 MiB body c=4", self.phase_big, False),
        ]
        live = [s for s in self.systems if s.available]
        for r in range(self.args.rounds):
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            rows: dict[str, dict[str, Any]] = {}
            for s in live:
                rows[s.key] = {"round": r + 1}
                self.rounds[s.key].append(rows[s.key])
            for name, phase, needs_stream in phases:
                if name == "fixed rate":
                    self.choose_rate()
                for s in order:
                    if needs_stream and not s.stream_available:
                        continue
                    _log(f"round {r + 1}/{self.args.rounds} {name}: {s.key}")
                    pids = _tree(s)
                    frozen = [] if self.args.no_freeze else [o for o in live if o is not s]
                    try:
                        with Frozen(frozen):
                            phase(s, rows[s.key])
                    except Exception as exc:  # keep the other figures; say what failed
                        rows[s.key].setdefault("failures", []).append(f"{name}: {exc}"[:500])
                        _log(f"{s.key} {name} failed: {exc}")
                    gone = {pid: what for pid, what in pids.items() if pid not in _tree(s)}
                    if gone:  # a crashed child the supervisor restarted: say so, and wait until it serves again
                        what = ", ".join(f"{w} (pid {p})" for p, w in gone.items())
                        rows[s.key].setdefault("failures", []).append(f"{name}: process died during the run: {what}")
                        _log(f"{s.key}: {what} died during {name}")
                        try:
                            s.wait_ready()
                        except Exception as exc:
                            _log(f"{s.key} did not come back: {exc}")

    def finish(self) -> dict[str, Any]:
        hwm = {s.key: hwm_by_role(s.root_pids, s.classify) for s in self.systems if s.available}
        assert self.up is not None
        return {
            "meta": _meta(self),
            "systems": [
                {
                    "key": s.key,
                    "label": s.label,
                    "available": s.available,
                    "stream_available": s.stream_available,
                    "note": s.note,
                    "rounds": self.rounds.get(s.key, []),
                    "hwm_kb": hwm.get(s.key, {}),
                    "idle_cpu_ms_per_s": self.idle.get(s.key, {}),
                }
                for s in self.systems
            ],
        }


@dataclass
class Measured:
    result: load.LoadResult
    cpu: dict[str, float]  # ms by role, the system's processes
    upstream_ms: float
    rss_kb: dict[str, int]
    foreign_cores: float
    loadgen_ms: float
    extproc: dict[str, float]  # ext_proc counter deltas by stage (llmgw)


def machine_busy_ms() -> float:
    """Busy CPU time of the whole machine (all but idle and iowait), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) * 1000.0 / CLK_TCK  # steal excluded


def children_cpu_ms() -> float:
    """CPU of the load generators this process ran and waited for (wrk, h2load)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000.0


class Frozen:
    """SIGSTOP every process of the other systems while one is measured, SIGCONT after.

    Why: the systems run side by side, and an idle one is not always idle (LiteLLM's
    background tasks were seen at 0.3 cores); on 2 vCPUs that would be taken from the
    system being measured. Parents are stopped before their children and resumed
    after them, so no supervisor sees a frozen child as hung.
    """

    def __init__(self, systems: list[System]) -> None:
        self.pids = [pid for s in systems for root in s.root_pids for pid in descendants(root)]  # parents first

    def __enter__(self) -> Frozen:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _tree(s: System) -> dict[int, str]:
    """pid -> role of every process of the system now."""
    return {pid: s.classify(pid, cmdline(pid)) for root in s.root_pids for pid in descendants(root)}


def _merge_peak(row: dict[str, Any], peak_kb: dict[str, int]) -> None:
    peaks = row.setdefault("rss_peak_kb", {})
    for role, kb in peak_kb.items():
        peaks[role] = max(peaks.get(role, 0), kb)


def _cmd_out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _meta(bench: Bench) -> dict[str, Any]:
    args = bench.args
    envoy = envoy_path(args.llmgw_py)
    envoy_version = _cmd_out([envoy, "--version"]).split("version:")[-1].strip().split("/")[1:2]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "rounds": args.rounds,
        "durations_s": bench.d.__dict__,
        "rate": bench.rate,
        "stream_clients": args.stream_clients,
        "freeze": not args.no_freeze,
        "stream_chunks": STREAM_CHUNKS,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": _cmd_out([args.llmgw_py, "-c", "import sys; print(sys.version.split()[0])"]),
        "envoy": envoy_version[0] if envoy_version else "",
        "litellm": _cmd_out(
            [
                str(Path(args.litellm_bin).parent / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ]
        ),
        "llmgw_commit": _cmd_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "llmgw_dirty": bool(
            _cmd_out(["git", "-C", str(REPO), "status", "--porcelain", "--", "extproc", "controlplane", "envoy"])
        ),
        "upstream": bench.up.anthropic_note if bench.up else "",
        "reply_bytes": len(bench.up.openai_json) if bench.up else 0,
        "request_bytes": bench.json_body.stat().st_size,
        "big_request_bytes": bench.big_body.stat().st_size,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="llmgw benchmark (use bench/run)")
    p.add_argument("--quick", action="store_true", help="1 round, short runs: a smoke test")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--rate", type=float, help="fixed offered rate, req/s (default: a third of the slowest maximum)")
    p.add_argument("--stream-clients", type=int, default=64, help="concurrent streams for streams/s")
    p.add_argument(
        "--systems", help="comma-separated subset: direct,envoy,llmgw,llmgw-anthropic,llmgw-policies,litellm,portkey"
    )
    p.add_argument("--out", default=str(HERE / "results"), help="results directory")
    p.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable), help="the project's python")
    p.add_argument("--litellm-bin", default=str(HERE / ".venv-litellm" / "bin" / "litellm"))
    p.add_argument("--portkey-dir", default=str(HERE / ".portkey"), help="npm prefix with @portkey-ai/gateway")
    p.add_argument(
        "--plot-python", default=str(HERE / ".venv-litellm" / "bin" / "python"), help="a python with matplotlib"
    )
    p.add_argument("--py-spy", default=str(HERE / ".venv-litellm" / "bin" / "py-spy"))
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of an extproc worker")
    p.add_argument("--no-freeze", action="store_true", help="do not SIGSTOP the other systems during a measurement")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir with configs and logs")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llmgw-bench-", dir="/tmp"))  # short: Unix socket paths
    _log(f"work dir {work}; llmgw python {args.llmgw_py}")
    status = 0
    try:
        with Launcher(work) as launcher:
            bench = Bench(args, launcher, work)
            bench.start()
            bench.measure_idle()
            bench.run_rounds()
            bench.measure_idle(when="end")
            results = bench.finish()
            if not args.no_profile:
                llmgw = next((s for s in bench.systems if s.key == "llmgw" and s.available), None)
                if llmgw is not None:
                    _log("profiling one extproc worker with py-spy")
                    others = [] if args.no_freeze else [s for s in bench.systems if s is not llmgw and s.available]
                    try:
                        with Frozen(others):
                            results["profile"] = profiling.profile_worker(
                                system=llmgw,
                                body=bench.json_body,
                                py_spy=args.py_spy,
                                out=out,
                                seconds=10 if not args.quick else 4,
                            )
                    except Exception as exc:
                        results["profile"] = {"error": str(exc)}
                        _log(f"profile failed: {exc}")
    except KeyboardInterrupt:
        _log("interrupted: every process started was stopped")
        return 130
    except Exception:
        traceback.print_exc()
        status = 1
        _log(f"failed; logs in {work}")
        return status
    (out / "results.json").write_text(json.dumps(results, indent=1))
    report.write(report.with_soak(results, out), out)
    if not Path(args.plot_python).exists():
        _log(f"no plot: {args.plot_python} is missing (bench/run creates it with matplotlib); results.md is written")
    else:
        plot = subprocess.run(
            [args.plot_python, str(HERE / "plot.py"), str(out / "results.json"), str(out / "results.png")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if plot.returncode != 0:
            _log(f"plot failed: {plot.stderr[-800:]}")
    failed = any(row.get("failures") for s in results["systems"] for row in s["rounds"])
    if args.keep_work or failed:
        _log(f"configs and logs kept in {work}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    _log(f"wrote {out}/results.md, results.png, ratios.txt")
    print((out / "ratios.txt").read_text(), end="")
    return status


if __name__ == "__main__":
    sys.exit(main())
