"""Memory soak: does an extproc worker's memory level off under steady load, or keep growing?

Starts the fake provider and the real gateway (`llmgw run`, 2 extproc workers by
default) on 127.0.0.1, drives a steady open-loop Poisson load at `--rate` req/s
for `--minutes`, mixing non-streaming and streaming chat completions on an
OpenAI route (direct: one ext_proc stream per request) and on an OpenAI ->
Anthropic route (router + attempt stages, translation both ways), and samples
every worker's RSS every `--sample-every` seconds.

With tracemalloc on (the default; `--no-tracemalloc` for RSS without its
overhead) the workers run with `LLMGW_TRACEMALLOC_DIR` (extproc/memdiag.py) and
dump a snapshot every `--snapshot-every` seconds; at the end the script prints
the traced Python heap over time and the top growth by traceback between the
snapshot after warm-up and the last one, and between the middle one and the
last one (growth that continues in the second half is what a leak looks like).

RSS growth with a flat traced heap is the allocator (arenas, fragmentation),
not Python objects: `--malloc-arena-max 2` runs the workers with MALLOC_ARENA_MAX.

Usage (from the repo root, the project's Python):
    PYTHONPATH=. .venv/bin/python bench/memory_soak.py --minutes 30 --rate 50 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from procs import Launcher, cmdline, descendants, free_port, status_kb, wait_http
from rawhttp import Conn, post
from upstream import chat_body, start_fake

REPO = Path(__file__).resolve().parent.parent
# (name, path, stream, weight): the OpenAI route is direct; /claude goes to an Anthropic backend.
KINDS = (
    ("openai-json", "/v1/chat/completions", False, 4),
    ("openai-stream", "/v1/chat/completions", True, 2),
    ("anthropic-json", "/claude/v1/chat/completions", False, 2),
    ("anthropic-stream", "/claude/v1/chat/completions", True, 1),
)
TRACE_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def manifests(*, port: int, fake_port: int) -> str:
    backends = ""
    for name, kind, key in (("soak-openai", "openai", "Authorization"), ("soak-claude", "anthropic", "x-api-key")):
        backends += f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
    provider:
      {kind}: {{}}
      host: 127.0.0.1
      port: {fake_port}
  policies:
    auth:
      secretRef: {{name: {name}-key, key: {key}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-key, namespace: default}}
stringData:
  {key}: sk-soak-{kind}
"""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: soak, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners:
    - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: soak, namespace: default}}
spec:
  parentRefs: [{{name: soak}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /claude}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: soak-claude}}]
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: soak-openai}}]
{backends}"""


@dataclass
class Counts:
    ok: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0


@dataclass
class Sample:
    t: float
    rss_kb: dict[str, int]  # worker name (or "envoy", "controlplane") -> VmRSS


def processes(root: int) -> dict[str, int]:
    """The gateway's processes by name: extproc-0.., envoy, controlplane."""
    out: dict[str, int] = {}
    for pid in descendants(root):
        cmd = cmdline(pid)
        if " -m extproc" in cmd and "--name " in cmd:
            out[cmd.split("--name ", 1)[1].split()[0]] = pid
        elif cmd.split(" ", 1)[0].rsplit("/", 1)[-1] == "envoy":
            out["envoy"] = pid
        elif pid == root:
            out["controlplane"] = pid
    return out


async def drive(
    *, port: int, root: int, rate: float, seconds: float, sample_every: float, seed: int
) -> tuple[Counts, list[Sample]]:
    counts = Counts()
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    idle: list[Conn] = []
    slots = asyncio.Semaphore(128)
    bodies = {
        (stream, usage): chat_body(model="soak-model", stream=stream, user_text="Say something short. " * 20)
        for stream in (False, True)
        for usage in (False, True)
    }
    for stream in (False, True):  # half the streams ask for usage themselves, half leave it to the gateway
        base = json.loads(bodies[(stream, True)])
        if stream:
            base["stream_options"] = {"include_usage": True}
        bodies[(stream, True)] = json.dumps(base, separators=(",", ":")).encode()

    async def one(kind: str, path: str, body: bytes) -> None:
        async with slots:
            conn = idle.pop() if idle else Conn("127.0.0.1", port)
            try:
                status = await asyncio.wait_for(post(conn, path, body), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                counts.errors[kind] = counts.errors.get(kind, 0) + 1
                conn.close()
                return
            bucket = counts.ok if 200 <= status < 300 else counts.errors
            bucket[kind] = bucket.get(kind, 0) + 1
            idle.append(conn)

    def sample(t0: float) -> None:
        rss = {name: status_kb(pid, "VmRSS") or 0 for name, pid in processes(root).items()}
        samples.append(Sample(round(loop.time() - t0, 1), rss))
        workers = "  ".join(f"{n}={kb / 1024:7.1f}" for n, kb in sorted(rss.items()) if n.startswith("extproc"))
        ok, err = sum(counts.ok.values()), sum(counts.errors.values())
        print(f"t={samples[-1].t:7.1f}s  RSS MiB {workers}  ok={ok} errors={err}", flush=True)

    rng = random.Random(seed)
    weights = [k[3] for k in KINDS]
    tasks: set[asyncio.Task[None]] = set()
    t0 = loop.time()
    next_sample = t0
    t = t0
    end = t0 + seconds
    while t < end:
        if loop.time() >= next_sample:
            sample(t0)
            next_sample += sample_every
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, path, stream, _ = rng.choices(KINDS, weights)[0]
        task = asyncio.create_task(one(kind, path, bodies[(stream, rng.random() < 0.5)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        counts.sent += 1
        t += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    sample(t0)
    for conn in idle:
        conn.close()
    return counts, samples


def at_minutes(samples: list[Sample], minute: float) -> Sample | None:
    """The sample nearest to `minute` (None when the run was shorter)."""
    if not samples or samples[-1].t < minute * 60 - 45:
        return None
    return min(samples, key=lambda s: abs(s.t - minute * 60))


def rss_table(samples: list[Sample], minutes: float) -> str:
    names = [*sorted(n for n in samples[0].rss_kb if n.startswith("extproc")), "envoy"]
    marks = [m for m in (0, 5, 10, 20, 30, 45, 60) if m <= minutes] or [0]
    if minutes not in marks:
        marks.append(minutes)
    lines = ["| process | " + " | ".join(f"{m:g} min" for m in marks) + " | MiB/min first half | second half |"]
    lines.append("|---" * (len(marks) + 3) + "|")
    half = minutes / 2
    for name in names:
        cells = []
        for m in marks:
            s = at_minutes(samples, m)
            cells.append(f"{s.rss_kb.get(name, 0) / 1024:.1f}" if s else "-")
        a, b, c = at_minutes(samples, 0), at_minutes(samples, half), at_minutes(samples, minutes)
        slopes = ["-", "-"]
        if a and b and c and half > 0:
            slopes = [
                f"{(b.rss_kb.get(name, 0) - a.rss_kb.get(name, 0)) / 1024 / half:+.3f}",
                f"{(c.rss_kb.get(name, 0) - b.rss_kb.get(name, 0)) / 1024 / half:+.3f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {slopes[0]} | {slopes[1]} |")
    return "\n".join(lines)


def top_growth(old: Path, new: Path, *, limit: int, frames: int) -> str:
    a = tracemalloc.Snapshot.load(str(old)).filter_traces(TRACE_FILTERS)
    b = tracemalloc.Snapshot.load(str(new)).filter_traces(TRACE_FILTERS)
    out = [
        f"traced {sum(s.size for s in a.statistics('filename')) / 1024:.0f} KiB -> "
        f"{sum(s.size for s in b.statistics('filename')) / 1024:.0f} KiB"
    ]
    for stat in b.compare_to(a, "traceback")[:limit]:
        if stat.size_diff <= 0:
            break
        out.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks (now {stat.size / 1024:.1f} KiB)")
        for line in stat.traceback.format(limit=frames, most_recent_first=True):
            out.append("      " + line.strip())
    return "\n".join(out)


def _slope(a: dict[str, float], b: dict[str, float], key: str) -> str:
    minutes = (b["t"] - a["t"]) / 60
    return f"{(b.get(key, 0) - a.get(key, 0)) / 1024 / minutes:+8.1f}" if minutes > 0 else "       -"


def analyse(trace_dir: Path, *, warmup_s: float, limit: int, frames: int) -> str:
    out: list[str] = []
    for jsonl in sorted(trace_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        out.append(
            f"== {jsonl.stem}: traced Python heap and tracemalloc's overhead (KiB), glibc malloc in use and"
            " free (KiB, C extensions included), RSS (MiB), asyncio tasks, gc objects"
        )
        for r in rows:
            out.append(
                f"  t={r['t']:7.1f}s traced={r['traced'] / 1024:7.0f} overhead={r['tracemalloc_overhead'] / 1024:6.0f}"
                f" malloc={r.get('malloc_in_use', 0) / 1024:7.0f} free={r.get('malloc_free', 0) / 1024:6.0f}"
                f" rss={r['rss_kb'] / 1024:6.1f} tasks={r['tasks']:3d} objects={r['gc_objects']}"
            )
        base = next((r for r in rows if r["t"] >= warmup_s), rows[0])
        mid = rows[(rows.index(base) + len(rows) - 1) // 2]
        last = rows[-1]
        for key in ("traced", "malloc_in_use", "malloc_free"):
            out.append(f"   {key:14s} KiB/min after warm-up: {_slope(base, mid, key)} then {_slope(mid, last, key)}")
        for first in (base, mid):
            if first is last:
                continue
            out.append(f"-- top growth by traceback, t={first['t']:.0f}s -> t={last['t']:.0f}s")
            out.append(
                top_growth(trace_dir / first["snapshot"], trace_dir / last["snapshot"], limit=limit, frames=frames)
            )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="offered requests per second (Poisson)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--snapshot-every", type=float, default=60.0, help="seconds between tracemalloc snapshots")
    parser.add_argument("--frames", type=int, default=10, help="tracemalloc frames per allocation")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only (no tracing overhead)")
    parser.add_argument("--malloc-arena-max", type=int, help="set MALLOC_ARENA_MAX for the gateway")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline snapshot")
    parser.add_argument("--top", type=int, default=12, help="tracebacks shown per comparison")
    parser.add_argument("--out", type=Path, help="keep snapshots, logs and results.json here")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable))
    args = parser.parse_args()

    work = args.out or Path(tempfile.mkdtemp(prefix="llmgw-soak-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    trace_dir = work / "tracemalloc"
    shutil.rmtree(trace_dir, ignore_errors=True)
    env = {**os.environ, "LLMGW_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    if not args.no_tracemalloc:
        env |= {
            "LLMGW_TRACEMALLOC_DIR": str(trace_dir),
            "LLMGW_TRACEMALLOC_INTERVAL": str(args.snapshot_every),
            "LLMGW_TRACEMALLOC_FRAMES": str(args.frames),
        }
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    with Launcher(work) as launcher:
        _, fake_port = start_fake(launcher, py=args.llmgw_py, repo=REPO)
        port, ready = free_port(), free_port()
        (work / "manifests").mkdir(exist_ok=True)
        (work / "manifests" / "soak.yaml").write_text(manifests(port=port, fake_port=fake_port))
        argv = [args.llmgw_py, "-m", "controlplane.cli", "run", "-f", str(work / "manifests")]
        argv += ["--workers", str(args.workers), "--listen-address", "127.0.0.1", "--run-dir", str(work / "run")]
        argv += ["--metrics-port", str(free_port()), "--ready-port", str(ready)]
        argv += ["--envoy-concurrency", "2"]
        gw = launcher.start("llmgw", argv, env=env, cwd=REPO)
        wait_http(f"http://127.0.0.1:{ready}/healthz/ready", timeout=60, proc=gw)
        print(
            f"gateway :{port} (pid {gw.pid}), fake provider :{fake_port}; {args.rate:g} req/s for "
            f"{args.minutes:g} min; tracemalloc {'off' if args.no_tracemalloc else 'on'}; work dir {work}",
            flush=True,
        )
        started = time.monotonic()
        counts, samples = asyncio.run(
            drive(
                port=port,
                root=gw.pid,
                rate=args.rate,
                seconds=args.minutes * 60,
                sample_every=args.sample_every,
                seed=args.seed,
            )
        )
        elapsed = time.monotonic() - started
        if not args.no_tracemalloc:
            time.sleep(min(args.snapshot_every, 5))  # let a pending snapshot finish before stopping
    print(
        f"\nsent {counts.sent} in {elapsed:.0f} s ({counts.sent / elapsed:.1f}/s);"
        f" ok {counts.ok}; errors {counts.errors}"
    )
    print("\nRSS (MiB) per process\n" + rss_table(samples, args.minutes))
    (work / "results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "sent": counts.sent,
                "ok": counts.ok,
                "errors": counts.errors,
                "samples": [{"t": s.t, "rss_kb": s.rss_kb} for s in samples],
            },
            indent=1,
        )
    )
    if not args.no_tracemalloc and trace_dir.exists():
        print("\n" + analyse(trace_dir, warmup_s=args.warmup, limit=args.top, frames=args.frames))
    print(f"\nresults in {work}")
    return 0 if not counts.errors else 1


if __name__ == "__main__":
    sys.exit(main())
