"""End to end: extproc and Envoy CPU per request and per streamed chunk, without and with regex guards.

Starts the real gateway (`llmgw run`, one extproc worker) twice in front of the fake provider:
once with a plain backend, once with the same backend plus a regex request guard (Reject on
Ssn+CreditCard, Mask on Email) and a streamed response mask (CreditCard, `streaming: Enabled`).
It sends sequential non-streaming requests (~2 KB prompt) and streamed requests (30 SSE
events each, a card number in the answer), and reads the CPU time the extproc worker and
Envoy used from /proc. Sequential on purpose: CPU per request, not throughput.

    PYTHONPATH=. python bench/guards_e2e.py [--requests 300] [--streams 100]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

TICK = os.sysconf("SC_CLK_TCK")
GUARDS = """
    ai:
      promptGuard:
        streaming: Enabled
        request:
          - regex: {action: Reject, builtins: [Ssn, CreditCard]}
          - regex: {builtins: [Email]}
        response:
          - regex: {builtins: [CreditCard]}
"""
PROMPT = "Please summarise the quarterly report for the leadership team, highlighting risks. " * 20
ANSWER = "Sure. The card on file is 4111 1111 1111 1111 and the rest of this answer is ordinary text. " * 2


def manifests(port: int, upstream: int, guarded: bool) -> str:
    return (
        gateway_yaml(port=port)
        + http_route_yaml(route_rule("/v1", "b"))
        + f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: b, namespace: default}}
spec:
  ai: {{provider: {{openai: {{}}, host: 127.0.0.1, port: {upstream}}}}}
  policies:
    auth: {{key: sk-bench}}{GUARDS if guarded else ""}
"""
    )


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def processes(gw: GatewayProcess) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"extproc": [], "envoy": []}
    for pid in gw.child_pids():
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"envoy" in cmd and b"extproc" not in cmd and b"controlplane" not in cmd:
            out["envoy"].append(pid)
        elif b"extproc" in cmd:
            out["extproc"].append(pid)
    return out


def run(provider: FakeProviderThread, *, guarded: bool, requests: int, streams: int) -> dict[str, float]:
    gw = GatewayProcess(workers=1)
    gw.write("gw.yaml", manifests(gw.port, provider.port, guarded))
    gw.start()
    try:
        procs = processes(gw)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            for _ in range(20):  # warm up
                client.post("/v1/chat/completions", json=body).raise_for_status()
            result: dict[str, float] = {}
            provider.set_behaviour(response_text=ANSWER, chunks=1)
            before = {k: cpu_seconds(v) for k, v in procs.items()}
            for _ in range(requests):
                client.post("/v1/chat/completions", json=body).raise_for_status()
            after = {k: cpu_seconds(v) for k, v in procs.items()}
            for k in procs:
                result[f"{k} ms/request"] = (after[k] - before[k]) / requests * 1000
            provider.set_behaviour(response_text=ANSWER, chunks=30)
            stream_body = {**body, "stream": True}
            before = {k: cpu_seconds(v) for k, v in procs.items()}
            events = 0
            for _ in range(streams):
                with client.stream("POST", "/v1/chat/completions", json=stream_body) as resp:
                    lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
                events += len(lines)
                assert guarded != any("4111" in line for line in lines), "the mask is on exactly when guarded"
            after = {k: cpu_seconds(v) for k, v in procs.items()}
            for k in procs:
                result[f"{k} µs/streamed chunk"] = (after[k] - before[k]) / max(events, 1) * 1e6
            return result
    finally:
        gw.stop()
        gw.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=100)
    args = parser.parse_args()
    provider = FakeProviderThread(name="fake").start()
    try:
        plain = run(provider, guarded=False, requests=args.requests, streams=args.streams)
        guarded = run(provider, guarded=True, requests=args.requests, streams=args.streams)
    finally:
        provider.stop()
    print("| measurement | no guards | regex guards | difference |")
    print("|---|---:|---:|---:|")
    for key in plain:
        print(f"| {key} | {plain[key]:.3f} | {guarded[key]:.3f} | {guarded[key] - plain[key]:+.3f} |")


if __name__ == "__main__":
    main()
