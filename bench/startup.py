"""Start-up cost of the CLI and of `llmgw run`: wall time and idle RSS of the supervisor and workers.

Why: what the supervisor and the workers import stays in their RSS for their life, and the
CLI is started by every `llmgw` command (issue 17: lazy imports). Compare two source trees:

    python bench/startup.py /path/to/before /path/to/after --runs 3

Each tree runs with PYTHONPATH=<tree> and cwd=<tree>: `llmgw --help`, then `llmgw run -f`
with one Gateway and no routes (2 workers) until `/healthz/ready`, RSS read 2 s later.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import descendants, free_port, status_kb, wait_http

GATEWAY = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: g, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
"""


def measure(tree: str, *, py: str, runs: int) -> str:
    env = {**os.environ, "PYTHONPATH": tree, "LLMGW_LOG_LEVEL": "WARNING"}
    cli = [py, "-m", "controlplane.cli"]
    helps, readies, sup, workers = [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([*cli, "--help"], env=env, cwd=tree, capture_output=True, check=True, timeout=60)
        helps.append(time.perf_counter() - t)
        work = Path(tempfile.mkdtemp(prefix="llmgw-startup-"))
        (work / "m").mkdir()
        (work / "m" / "g.yaml").write_text(GATEWAY.format(port=free_port()))
        ready = free_port()
        argv = [*cli, "run", "-f", str(work / "m"), "--workers", "2", "--listen-address", "127.0.0.1"]
        argv += ["--run-dir", str(work / "run"), "--metrics-port", str(free_port()), "--ready-port", str(ready)]
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{ready}/healthz/ready", timeout=60)
            readies.append(time.perf_counter() - t)
            time.sleep(2)
            sup.append((status_kb(proc.pid, "VmRSS") or 0) / 1024)
            kids = [p for p in descendants(proc.pid) if "extproc" in Path(f"/proc/{p}/cmdline").read_text()]
            workers.append(sum(status_kb(p, "VmRSS") or 0 for p in kids) / 1024)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    m = statistics.median
    return (
        f"{tree}: llmgw --help {m(helps) * 1000:.0f} ms; llmgw run ready in {m(readies):.2f} s; idle RSS "
        f"supervisor {m(sup):.1f} MiB, 2 workers {m(workers):.1f} MiB (median of {runs})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("trees", nargs="+", help="source trees (repository roots) to compare")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable))
    args = p.parse_args()
    for tree in args.trees:
        print(measure(str(Path(tree).resolve()), py=args.llmgw_py, runs=args.runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
