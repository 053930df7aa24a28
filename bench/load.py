"""Load generators: wrk (closed loop, fixed concurrency) and h2load (streams).

Why these: wrk keeps N connections busy and measures the most a system can do
(and, with one connection, its latency with nothing queued); its Lua `done`
hook prints exact microsecond percentiles as one JSON line. h2load drives the
streaming workload: it is C, so reading 30 SSE events per stream at hundreds
of streams/s costs the client little CPU, unlike a Python client. (Latency at a
fixed offered rate is `openloop.py`; time to first token is `streams.py`.)

Every run is bounded (-d / -D plus a subprocess timeout).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from upstream import CLIENT_KEY

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"


@dataclass
class LoadResult:
    """What one load run measured. Latencies in ms; `errors` counts non-2xx and socket errors."""

    requests: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def wrk(
    *,
    url: str,
    body: Path,
    connections: int,
    seconds: float,
    threads: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Closed loop: `connections` keep-alive connections, each sending the next request on the last answer."""
    threads = threads or min(2, connections)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={
            "BENCH_BODY": str(body),
            "BENCH_AUTH": f"Bearer {CLIENT_KEY}",
            "BENCH_HEADERS": "".join(f"{k}: {v}\n" for k, v in (headers or {}).items()),
            "PATH": "/usr/bin:/bin",
        },
        timeout=seconds + 60,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk printed no summary (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}"
        )
    d = json.loads(line.split(" ", 1)[1])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return LoadResult(
        requests=d["requests"] - d["status"],  # non-2xx answers are not throughput
        seconds=d["duration_us"] / 1e6,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        errors=errors,
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _h2load(argv: list[str], seconds: float) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0 and "finished in" not in proc.stdout:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-500:]}")
    return proc.stdout


def _h2load_counts(out: str) -> tuple[int, int, float]:
    """(succeeded 2xx, failed+errored+timeout+non-2xx, measured seconds) from h2load's summary."""
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    fin = re.search(r"finished in ([\d.]+)(ms|s)", out)
    if not (req and codes and fin):
        raise RuntimeError(f"cannot parse h2load output: {out[-800:]}")
    ok = int(codes.group(1))
    bad = int(req.group(5)) + int(req.group(6)) + int(req.group(7)) + sum(int(codes.group(i)) for i in (2, 3, 4))
    seconds = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    return ok, bad, seconds


def streams(
    *, url: str, body: Path, clients: int, seconds: float, headers: Mapping[str, str] | None = None
) -> LoadResult:
    """Closed loop over `clients` connections of streaming requests: completed streams per second.

    No latency here: h2load prints no percentiles, and TTFT is measured by `streams.ttft`.
    """
    argv = [
        "h2load",
        "--h1",
        "-c",
        str(clients),
        "-D",
        str(max(1, round(seconds))),
        "-d",
        str(body),
        "-H",
        "content-type: application/json",
        "-H",
        f"authorization: Bearer {CLIENT_KEY}",
        *(arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")),
        url,
    ]
    ok, bad, measured = _h2load_counts(_h2load(argv, seconds))
    return LoadResult(requests=ok, seconds=measured, p50_ms=None, p99_ms=None, errors=bad)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
