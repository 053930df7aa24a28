"""Where an extproc worker's time goes under the non-streaming load (py-spy).

Why: the design notes say most of the Python CPU is gRPC machinery, not our
logic, and that every ext_proc message costs more than the work done with it.
This records one worker (the busiest of the two) while wrk drives the OpenAI
route at 32 connections: a flame graph (SVG, for people) and a raw collapsed
recording that we summarise ourselves (for the report): top functions by own
time, and the share of samples in gRPC, protobuf, the event loop, syscalls,
and our own code (extproc/, controlplane/).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from procs import CLK_TCK, cmdline, cpu_ticks, descendants
from systems import System
from upstream import CLIENT_KEY

HERE = Path(__file__).resolve().parent

# Ordered: the first category whose pattern matches a frame wins.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("our code (extproc/, controlplane/)", re.compile(r"[/( ](extproc|controlplane)/")),
    # grpclib (the workers' ext_proc server and config client) and the HTTP/2 libraries under it.
    ("gRPC (grpclib, h2, hpack)", re.compile(r"grpclib|[/(]h2/|hpack|hyperframe|multidict", re.I)),
    ("gRPC (grpc.aio, cygrpc, core)", re.compile(r"grpc|cygrpc|_cython|\.pyx|absl|ares", re.I)),
    ("protobuf (upb)", re.compile(r"protobuf|upb|_message\.|descriptor", re.I)),
    ("JSON (orjson)", re.compile(r"orjson", re.I)),
    ("metrics (prometheus_client)", re.compile(r"prometheus", re.I)),
    (
        "event loop (asyncio, uvloop)",
        re.compile(r"asyncio|uvloop|selectors|libuv|uv__|uv_run|loop\.c|_weakrefset", re.I),
    ),
]
SYSCALLS = "libc / kernel (syscalls, memory)"
INTERPRETER = "CPython interpreter"
_LIBC = re.compile(r"\(libc\.so|\(libpthread|\(ld-linux|\(\[vdso\]|^0x[0-9a-f]+ \(libc", re.I)
_PYTHON = re.compile(
    r"\(python3|\(libpython|_PyEval|PyObject_|_Py[A-Z]|object\.h|ceval|<string>|gc_collect|"
    r"\(dataclasses|\(typing|\(enum",
    re.I,
)
# Leaf frames where a thread waits rather than runs: samples ending here are not CPU.
_WAIT = re.compile(
    r"^(epoll_wait|epoll_pwait|epoll_pwait2|poll|ppoll|select|pthread_cond_(timed)?wait|"
    r"__futex_abstimed_wait\w*|futex_wait\w*|__GI___poll|nanosleep|clock_nanosleep|"
    r"__lll_lock_wait\w*|sem_wait|sem_timedwait) "
)


def _category(frame: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(frame):
            return name
    if _LIBC.search(frame):
        return SYSCALLS
    if _PYTHON.search(frame):
        return INTERPRETER
    return "other"


def _responsible(frames: list[str]) -> str:
    """The innermost library that asked for this sample's work (libc and the interpreter are skipped)."""
    for frame in reversed(frames):
        cat = _category(frame)
        if cat not in (SYSCALLS, INTERPRETER, "other"):
            return cat
    return _category(frames[-1])


def parse_collapsed(text: str) -> dict[str, Any]:
    """Samples by own (leaf) frame, inclusive frame, leaf category and responsible library; waits set apart."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf_cats: Counter[str] = Counter()
    responsible: Counter[str] = Counter()
    syscalls: Counter[str] = Counter()
    busy = waiting = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if _WAIT.match(frames[-1]):
            waiting += count
            continue
        busy += count
        if _category(frames[-1]) == SYSCALLS:
            caller = next((f for f in reversed(frames) if _category(f) not in (SYSCALLS, INTERPRETER)), "?")
            syscalls[f"{frames[-1].split(' ', 1)[0]} <- {caller}"] += count
        own[frames[-1]] += count
        leaf_cats[_category(frames[-1])] += count
        responsible[_responsible(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "own": own,
        "inclusive": inclusive,
        "leaf": leaf_cats,
        "responsible": responsible,
        "syscalls": syscalls,
        "busy": busy,
        "waiting": waiting,
    }


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU ms so far of each thread of `pid`, by thread name (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if task.name == str(pid):
            name = f"main thread ({name})"
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) * 1000.0 / CLK_TCK
    return out


def _busiest_extproc(system: System, seconds: float = 1.5) -> int:
    pids = [p for p in descendants(system.root_pids[0]) if system.classify(p, cmdline(p)) == "extproc"]
    if not pids:
        raise RuntimeError("no extproc worker found")
    before = {p: cpu_ticks(p) or 0 for p in pids}
    time.sleep(seconds)
    return max(pids, key=lambda p: (cpu_ticks(p) or 0) - before[p])


def _py_spy(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def profile_worker(*, system: System, body: Path, py_spy: str, out: Path, seconds: int) -> dict[str, Any]:
    """Record the busiest extproc worker under wrk c=32; write extproc-profile.svg and profile.md."""
    total_s = 3 + 2 * seconds + 8
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c32", f"-d{total_s}s", "--timeout", "30s", "-s", str(HERE / "wrk_post.lua"), system.json_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"BENCH_BODY": str(body), "BENCH_AUTH": f"Bearer {CLIENT_KEY}", "PATH": "/usr/bin:/bin"},
    )
    try:
        time.sleep(2)
        pid = _busiest_extproc(system)
        svg = out / "extproc-profile.svg"
        native = ["--native"]
        rec = _py_spy([py_spy, "record", *native, "-o", str(svg), "-p", str(pid), "-d", str(seconds)], seconds + 60)
        if rec.returncode != 0:  # --native needs unwind info that some builds lack; fall back to Python frames
            native = []
            rec = _py_spy([py_spy, "record", "-o", str(svg), "-p", str(pid), "-d", str(seconds)], seconds + 60)
        if rec.returncode != 0:
            raise RuntimeError(f"py-spy record failed: {rec.stderr[-500:]}")
        raw = out / ".extproc-profile.collapsed"
        threads_before, t0 = thread_cpu(pid), time.monotonic()
        argv = [py_spy, "record", *native, "-r", "200", "--format", "raw", "-o", str(raw), "-p", str(pid)]
        raw_rec = _py_spy([*argv, "-d", str(seconds)], seconds + 60)
        threads_after, wall = thread_cpu(pid), time.monotonic() - t0
        dump = _py_spy([py_spy, "dump", *native, "-p", str(pid)], 60)
        collapsed = raw.read_text() if raw_rec.returncode == 0 and raw.exists() else ""
        raw.unlink(missing_ok=True)
        wrk_out, _ = wrk.communicate(timeout=total_s + 60)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait(10)
    line = next((ln for ln in wrk_out.splitlines() if ln.startswith("BENCHJSON ")), None)
    rps = 0.0
    if line is not None:
        d = json.loads(line.split(" ", 1)[1])
        rps = d["requests"] / (d["duration_us"] / 1e6)
    p = parse_collapsed(collapsed)
    busy = p["busy"] or 1
    threads = {name: (threads_after.get(name, 0.0) - threads_before.get(name, 0.0)) / wall for name in threads_after}
    summary: dict[str, Any] = {
        "pid": pid,
        "native": bool(native),
        "samples_busy": p["busy"],
        "samples_waiting": p["waiting"],
        "rps_total": rps,
        "thread_cpu_ms_per_s": dict(sorted(threads.items(), key=lambda kv: -kv[1])),
        "responsible": {k: v / busy for k, v in p["responsible"].most_common()},
        "leaf": {k: v / busy for k, v in p["leaf"].most_common()},
        "top_self": [(f, n / busy) for f, n in p["own"].most_common(20)],
        "syscalls": [(f, n / busy) for f, n in p["syscalls"].most_common(12)],
        "top_ours_inclusive": [
            (f, n / busy)
            for f, n in p["inclusive"].most_common(500)
            if _category(f).startswith("our code") and "__main__" not in f and "worker.py" not in f
        ][:15],
        "dump": dump.stdout[-6000:],
    }
    _write_md(summary, out / "profile.md", seconds=seconds)
    return {k: v for k, v in summary.items() if k != "dump"}


def _write_md(s: dict[str, Any], path: Path, *, seconds: int) -> None:
    threads = s["thread_cpu_ms_per_s"]
    process_ms = sum(threads.values())
    per_worker_rps = s["rps_total"] / 2 if s["rps_total"] else 0.0
    main = sum(v for k, v in threads.items() if k.startswith("main thread"))
    resp = s["responsible"]
    ours = resp.get("our code (extproc/, controlplane/)", 0.0)
    grpc = resp.get("gRPC (grpc.aio, cygrpc, core)", 0.0) + resp.get("gRPC (grpclib, h2, hpack)", 0.0)
    lines = [
        "# Where an extproc worker's time goes",
        "",
        f"py-spy {'--native ' if s['native'] else ''}recording of one extproc worker (pid {s['pid']}, the busier of "
        f"two) for {seconds} s while wrk drives the OpenAI route (non-streaming, ~2 KB request, 32 connections, "
        f"{s['rps_total']:.0f} req/s through the gateway). Flame graph: [extproc-profile.svg](extproc-profile.svg). "
        f"{s['samples_busy']} samples on CPU; {s['samples_waiting']} samples of threads waiting in epoll/futex "
        "were set apart (not CPU).",
        "",
        "## Summary",
        "",
        f"- The worker burned {process_ms:.0f} ms of CPU per second"
        + (
            f" (~{process_ms / per_worker_rps * 1000:.0f} µs per request if the two workers share the load evenly)"
            if per_worker_rps
            else ""
        )
        + f"; its main (asyncio) thread {main:.0f} ms/s, its other threads the rest.",
        f"- By the library that asked for the work (innermost non-libc frame): gRPC machinery {grpc * 100:.0f} %, "
        f"our code (extproc/) {ours * 100:.0f} %, the rest below. Syscalls (write/sendmsg/recvmsg on the Unix "
        "socket, eventfd wake-ups) are charged to whoever made them.",
        "",
        "## CPU by thread (from /proc/PID/task, during the recording)",
        "",
        "| thread | CPU ms/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in threads.items() if v >= 0.5]
    lines += [
        "",
        "## CPU by library responsible",
        "",
        "Each sample counts for the innermost frame that is not libc or the interpreter.",
        "",
        "| library | share of on-CPU samples |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v * 100:.1f} % |" for k, v in resp.items()]
    lines += ["", "## CPU by innermost frame's kind", "", "| kind | share |", "|---|---|"]
    lines += [f"| {k} | {v * 100:.1f} % |" for k, v in s["leaf"].items()]
    lines += ["", "## Top functions by own time", "", "| function | share |", "|---|---|"]
    lines += [f"| `{f}` | {v * 100:.1f} % |" for f, v in s["top_self"]]
    lines += [
        "",
        "## libc time by caller",
        "",
        "Own time in libc (syscalls, malloc) and the first non-libc frame that called it.",
        "",
        "| libc function <- caller | share |",
        "|---|---|",
    ]
    lines += [f"| `{f}` | {v * 100:.1f} % |" for f, v in s["syscalls"]]
    lines += ["", "## Our functions by inclusive time", "", "| function | share (incl. callees) |", "|---|---|"]
    lines += [f"| `{f}` | {v * 100:.1f} % |" for f, v in s["top_ours_inclusive"]]
    lines += ["", "## One `py-spy dump` under load", "", "```", s["dump"].strip(), "```", ""]
    path.write_text("\n".join(lines))
