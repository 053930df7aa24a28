"""Soak: a fixed offered rate for minutes, mixed load, policies on; is memory flat and is every answer a 2xx?

Issue 17's soak target: 10 minutes at a fixed offered rate with mixed JSON and SSE
traffic on an OpenAI route and a translated OpenAI -> Anthropic route, an API key
policy and a token limit on, the RSS of the extproc workers and the control plane
sampled every 10 s; flat means growth < 5 % after warm-up, and there must be 0 errors.

What it starts (all on 127.0.0.1, every process stopped on exit): the fake provider
and `llmgw run` (2 extproc workers) with a Gateway-wide AgentgatewayPolicy whose
`traffic` is `TRAFFIC_PARTS`: API key authentication (Strict, a Secret of 200 keys,
the client's among them) and a token limit (`rateLimit.local`, a budget no run
reaches, so the limit is checked and counted on every request but never says no).
A part the build does not support yet (`llmgw validate` names its field) is left
out and the report says so, so the same script runs before and after a feature
lands; add a part to `TRAFFIC_PARTS` to soak with more policy on.

What it writes (`--out`, default bench/results): `soak.md` (the verdicts and a
table), `soak.csv` (one row per sample: RSS per process and the running counts)
and `soak.png` (RSS over time; needs matplotlib, in this Python or in
`--plot-python`, else the report says the CSV is all there is).

Usage (from the repo root, the project's Python):
    PYTHONPATH=. .venv/bin/python bench/soak.py                  # 10 min at 40 req/s
    PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 2 --rate 20 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs import Launcher, cmdline, descendants, free_port, status_kb, wait_http
from rawhttp import Conn, post
from upstream import CLIENT_KEY, chat_body, llmgw_command, start_fake

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# (name, path, stream, weight): /v1 is the OpenAI route, /claude an Anthropic backend (translated both ways).
KINDS = (
    ("openai-json", "/v1/chat/completions", False, 4),
    ("openai-stream", "/v1/chat/completions", True, 2),
    ("anthropic-json", "/claude/v1/chat/completions", False, 2),
    ("anthropic-stream", "/claude/v1/chat/completions", True, 1),
)
# The Gateway-wide policy's `traffic`, part by part (name, YAML under `traffic:`, the field a build may not know).
TRAFFIC_PARTS = (
    (
        "API key (Strict, 200 keys)",
        "    apiKeyAuthentication: {mode: Strict, secretRef: {name: soak-client-keys}}\n",
        "",
    ),
    (
        "token limit (rateLimit.local, tokens/min)",
        "    rateLimit:\n      local:\n        - {tokens: 2000000000, unit: Minutes}\n",
        "rateLimit",
    ),
)
GOAL_GROWTH = 0.05
# The client drops a keep-alive connection idle this long, as pooled HTTP clients do (aiohttp 15 s,
# httpx 5 s): the gateway closes idle connections after --idle-timeout (300 s), and a request written
# on a connection the server is closing is lost before Envoy sees it (the first 10-minute run had
# one such 0-byte read and no access-log entry for it).
KEEPALIVE_S = 15.0


def manifests(*, port: int, fake_port: int, traffic: str) -> str:
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
    keys = "".join(f"  client-{i}: sk-soak-other-{i:04d}\n" for i in range(199))
    policy = f"""---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {{name: soak, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: soak}}]
  traffic:
{traffic}---
apiVersion: v1
kind: Secret
metadata: {{name: soak-client-keys, namespace: default}}
stringData:
  soak: '{{"key": "{CLIENT_KEY}", "metadata": {{"user": "soak", "team": "perf"}}}}'
{keys}"""
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
{backends}{policy}"""


def choose_traffic(*, py: str, work: Path, port: int, fake_port: int) -> tuple[str, list[str], list[str]]:
    """The policy parts this build accepts: (traffic YAML, parts on, parts left out with the reason)."""
    parts = list(TRAFFIC_PARTS)
    skipped: list[str] = []
    mdir = work / "manifests"
    mdir.mkdir(parents=True, exist_ok=True)
    while True:
        traffic = "".join(p[1] for p in parts)
        (mdir / "soak.yaml").write_text(manifests(port=port, fake_port=fake_port, traffic=traffic))
        proc = subprocess.run(
            [*llmgw_command(py), "validate", "-f", str(mdir)], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        if proc.returncode == 0:
            return traffic, [p[0] for p in parts], skipped
        out = proc.stderr + proc.stdout
        bad = next((p for p in parts if p[2] and p[2] in out), None)
        if bad is None:
            raise RuntimeError(f"llmgw validate refused the soak manifests: {out.strip()[:800]}")
        line = next((ln.strip() for ln in out.splitlines() if bad[2] in ln), bad[2])
        skipped.append(f"{bad[0]}: {line[:300]}")
        parts.remove(bad)


@dataclass
class Counts:
    ok: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0


@dataclass
class Sample:
    t: float
    rss_kb: dict[str, int]  # extproc-<pid>, envoy, controlplane
    ok: int
    errors: int


def role(pid: int, root: int) -> str:
    cmd = cmdline(pid)
    if " -m extproc" in cmd or "/extproc " in cmd:
        return "extproc"
    if cmd.split(" ", 1)[0].rsplit("/", 1)[-1] == "envoy":
        return "envoy"
    return "controlplane"  # the supervisor (root) and any other Python child of it


def rss_by_role(root: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid in descendants(root):
        r = role(pid, root)
        out[r] = out.get(r, 0) + (status_kb(pid, "VmRSS") or 0)
    return out


async def drive(
    *, port: int, root: int, rate: float, seconds: float, every: float, seed: int
) -> tuple[Counts, list[Sample]]:
    counts = Counts()
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    idle: list[tuple[Conn, float]] = []  # (connection, when it was last used)
    slots = asyncio.Semaphore(128)
    bodies = {
        stream: chat_body(model="soak-model", stream=stream, user_text="Say something short. " * 20)
        for stream in (False, True)
    }

    async def one(kind: str, path: str, body: bytes) -> None:
        async with slots:
            conn = None
            while idle and conn is None:
                conn, used = idle.pop()
                if loop.time() - used > KEEPALIVE_S:
                    conn.close()
                    conn = None
            conn = conn or Conn("127.0.0.1", port)
            try:
                status = await asyncio.wait_for(post(conn, path, body), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                counts.errors[kind] = counts.errors.get(kind, 0) + 1
                if len(counts.error_samples) < 10:
                    counts.error_samples.append(f"{kind}: {type(exc).__name__} {exc}"[:200])
                conn.close()
                return
            if 200 <= status < 300:
                counts.ok[kind] = counts.ok.get(kind, 0) + 1
            else:
                counts.errors[kind] = counts.errors.get(kind, 0) + 1
                if len(counts.error_samples) < 10:
                    counts.error_samples.append(f"{kind}: HTTP {status}")
            idle.append((conn, loop.time()))

    def sample(t0: float) -> None:
        s = Sample(round(loop.time() - t0, 1), rss_by_role(root), sum(counts.ok.values()), sum(counts.errors.values()))
        samples.append(s)
        mib = "  ".join(f"{k}={v / 1024:6.1f}" for k, v in sorted(s.rss_kb.items()))
        print(f"t={s.t:6.1f}s RSS MiB {mib}  ok={s.ok} errors={s.errors}", flush=True)

    rng = random.Random(seed)
    weights = [k[3] for k in KINDS]
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()  # Ctrl-C / SIGTERM: stop sending, finish, report what was measured
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    t0 = loop.time()
    next_sample, t, end = t0, t0, t0 + seconds
    while t < end and not stop.is_set():
        if loop.time() >= next_sample:
            sample(t0)
            next_sample += every
        delay = t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, path, stream, _ = rng.choices(KINDS, weights)[0]
        task = asyncio.create_task(one(kind, path, bodies[stream]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        counts.sent += 1
        t += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    sample(t0)
    for conn, _ in idle:
        conn.close()
    return counts, samples


def gauge(s: Sample) -> int:
    """The target's figure: extproc workers + control plane, KiB."""
    return s.rss_kb.get("extproc", 0) + s.rss_kb.get("controlplane", 0)


def growth(samples: list[Sample], warmup_s: float, key: str | None = None) -> tuple[float, float, float]:
    """(KiB just after warm-up, KiB at the end, growth ratio): medians of the first and last 3 samples after warm-up."""
    after = [s for s in samples if s.t >= warmup_s] or samples
    value = (lambda s: gauge(s)) if key is None else (lambda s: s.rss_kb.get(key, 0))
    a = statistics.median(value(s) for s in after[:3])
    b = statistics.median(value(s) for s in after[-3:])
    return a, b, (b - a) / a if a else 0.0


def write_csv(path: Path, samples: list[Sample]) -> None:
    roles = sorted({r for s in samples for r in s.rss_kb})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", *(f"{r}_mib" for r in roles), "extproc_plus_controlplane_mib", "ok", "errors"])
        for s in samples:
            w.writerow(
                [s.t, *(f"{s.rss_kb.get(r, 0) / 1024:.2f}" for r in roles), f"{gauge(s) / 1024:.2f}", s.ok, s.errors]
            )


def plot(csv_path: Path, png: Path, *, warmup_s: float, title: str) -> None:
    """RSS over time from the CSV (run in a Python that has matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    t = [float(r["t_s"]) / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for col in rows[0]:
        if col.endswith("_mib"):
            ax.plot(t, [float(r[col]) for r in rows], label=col.removesuffix("_mib").replace("_", " "))
    ax.axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def try_plot(csv_path: Path, png: Path, *, warmup_s: float, title: str, plot_python: str) -> str:
    """Plot here if matplotlib imports, else with `plot_python`; '' or why there is no PNG."""
    try:
        plot(csv_path, png, warmup_s=warmup_s, title=title)
        return ""
    except ImportError:
        pass
    plot_python = str(Path(plot_python).absolute())  # the plot runs in bench/: a relative path must not move
    if not Path(plot_python).exists():
        return f"no PNG: matplotlib is not in this Python and {plot_python} does not exist (the CSV has every sample)"
    code = (
        "import sys, pathlib, soak; "
        "soak.plot(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]),"
        " warmup_s=float(sys.argv[3]), title=sys.argv[4])"
    )
    proc = subprocess.run(
        [plot_python, "-c", code, str(csv_path), str(png), str(warmup_s), title],
        capture_output=True,
        text=True,
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        timeout=120,
    )
    return "" if proc.returncode == 0 else f"no PNG: {plot_python} could not plot: {proc.stderr.strip()[-300:]}"


def verdicts(counts: Counts, samples: list[Sample], warmup_s: float) -> list[dict[str, str]]:
    """Issue 17's soak targets: flat RSS after warm-up, 0 errors (and the RSS ceiling, seen under this load)."""
    a, b, g = growth(samples, warmup_s)
    errors, ok = sum(counts.errors.values()), sum(counts.ok.values())
    peak = max(gauge(s) for s in samples)
    return [
        {
            "target": f"soak: RSS flat after warm-up (growth < {GOAL_GROWTH:.0%}), extproc workers + control plane",
            "figure": f"{a / 1024:.1f} -> {b / 1024:.1f} MiB ({g:+.1%})",
            "verdict": "met" if g < GOAL_GROWTH else "MISSED",
        },
        {
            "target": "soak: 0 errors",
            "figure": f"{errors} of {counts.sent} ({ok} 2xx)",
            "verdict": "met" if errors == 0 else "MISSED",
        },
        {
            # MB as in results.md's target line (KiB / 1024), so the two agree.
            "target": "soak: extproc + control plane < 180 MB (largest sample)",
            "figure": f"{peak / 1024:.1f} MB",
            "verdict": "met" if peak / 1024 < 180 else "MISSED",
        },
    ]


def report(
    *,
    args: argparse.Namespace,
    counts: Counts,
    samples: list[Sample],
    on: list[str],
    skipped: list[str],
    elapsed: float,
    plot_note: str,
    commit: str,
) -> str:
    errors = sum(counts.errors.values())
    lines = [
        "# Soak: fixed offered rate, mixed load, policies on",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, llmgw {commit}, "
        f"`bench/soak.py --minutes {args.minutes:g} --rate {args.rate:g}` "
        f"({args.workers} extproc workers, Envoy concurrency 2"
        + (f", MALLOC_ARENA_MAX={args.malloc_arena_max}" if args.malloc_arena_max else "")
        + f"), {os.cpu_count()} shared vCPUs; RSS sampled every {args.sample_every:g} s, warm-up {args.warmup:g} s.",
        "",
        "Load: Poisson arrivals, "
        + ", ".join(f"{k[0]} {k[3]}/{sum(x[3] for x in KINDS)}" for k in KINDS)
        + " (`anthropic-*`: OpenAI client, Anthropic Messages upstream, translated both ways;"
        + " streams: 30 events 5 ms apart)."
        + f" Gateway-wide policy on: {'; '.join(on) or 'none'}.",
    ]
    if skipped:
        lines += ["", "Left out (this build does not support it yet): " + "; ".join(skipped) + "."]
    lines += ["", "| target | figure | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['figure']} | {t['verdict']} |" for t in verdicts(counts, samples, args.warmup)]
    lines += [
        "",
        f"Sent {counts.sent} in {elapsed:.0f} s ({counts.sent / elapsed:.1f}/s offered {args.rate:g}); 2xx by kind: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.ok.items()))
        + (f"; errors by kind: {counts.errors}; first: {counts.error_samples}" if errors else "")
        + ".",
        "",
        "| process | after warm-up MiB | end MiB | growth |",
        "|---|---|---|---|",
    ]
    for r in sorted({r for s in samples for r in s.rss_kb}):
        ra, rb, rg = growth(samples, args.warmup, r)
        lines.append(f"| {r} | {ra / 1024:.1f} | {rb / 1024:.1f} | {rg:+.1%} |")
    lines += [
        "",
        "Growth compares the median of the first three samples after warm-up with the median of the last three.",
        "`soak.csv`: every sample. " + (plot_note or "`soak.png`: RSS over time."),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=40.0, help="offered requests per second (Poisson)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds of warm-up before growth is measured")
    p.add_argument("--malloc-arena-max", type=int, help="set MALLOC_ARENA_MAX for the gateway's processes")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable))
    p.add_argument("--plot-python", default=str(HERE / ".venv-litellm" / "bin" / "python"))
    args = p.parse_args()

    args.out = args.out.resolve()  # the plot runs in another Python, from another directory
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llmgw-soak-", dir="/tmp"))
    env = {**os.environ, "LLMGW_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    with Launcher(work) as launcher:
        _, fake_port = start_fake(launcher, py=args.llmgw_py, repo=REPO)
        port, ready = free_port(), free_port()
        _, on, skipped = choose_traffic(py=args.llmgw_py, work=work, port=port, fake_port=fake_port)
        argv = [*llmgw_command(args.llmgw_py), "run", "-f", str(work / "manifests"), "--workers", str(args.workers)]
        argv += ["--listen-address", "127.0.0.1", "--run-dir", str(work / "run"), "--envoy-concurrency", "2"]
        argv += ["--metrics-port", str(free_port()), "--ready-port", str(ready)]
        gw = launcher.start("llmgw", argv, env=env, cwd=REPO)
        wait_http(f"http://127.0.0.1:{ready}/healthz/ready", timeout=60, proc=gw)
        print(
            f"gateway :{port}; policy: {on}; left out: {skipped}; {args.rate:g}/s for {args.minutes:g} min", flush=True
        )
        started = time.monotonic()
        counts, samples = asyncio.run(
            drive(
                port=port,
                root=gw.pid,
                rate=args.rate,
                seconds=args.minutes * 60,
                every=args.sample_every,
                seed=args.seed,
            )
        )
        elapsed = time.monotonic() - started
    csv_path, png = args.out / "soak.csv", args.out / "soak.png"
    write_csv(csv_path, samples)
    title = f"llmgw soak: {args.rate:g} req/s mixed, {args.minutes:g} min, RSS every {args.sample_every:g} s"
    note = try_plot(csv_path, png, warmup_s=args.warmup, title=title, plot_python=args.plot_python)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    md = report(
        args=args,
        counts=counts,
        samples=samples,
        on=on,
        skipped=skipped,
        elapsed=elapsed,
        plot_note=note,
        commit=commit,
    )
    (args.out / "soak.md").write_text(md)
    now = datetime.datetime.now(datetime.UTC)
    when = f"{now:%Y-%m-%d %H:%M} UTC, llmgw {commit}, {args.minutes:g} min at {args.rate:g}/s"
    summary = {"when": when, "targets": verdicts(counts, samples, args.warmup), "sent": counts.sent}
    summary |= {"ok": counts.ok, "errors": counts.errors, "policy": on, "left_out": skipped}
    (args.out / "soak.json").write_text(json.dumps(summary, indent=1))
    print(md)
    return 0 if not counts.errors else 1


if __name__ == "__main__":
    sys.exit(main())
