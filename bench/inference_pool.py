"""InferencePool benchmark: round robin vs llmgw's endpoint picker vs the picker with priorities.

Four simulated model servers (fakeprovider/model_server.py: capacity 4 sequences,
FIFO queue, prefix cache) on 127.0.0.2-5 behind one `llmgw run` gateway with
three routes to the same pods:

- `/rr`: a pool whose endpoint picker is a round-robin EPP (the protocol-faithful
  test EPP, tests/fakes/epp.py): what a plain Service would do;
- `/picker`: a pool without endpointPickerRef (llmgw's picker in the router stage);
- `/prio`: the same pool with InferenceObjective `interactive` (priority 10):
  background traffic (no objective) is shed with 429 when every pod is saturated.

The load is open loop (Poisson arrivals) at rising rates, streaming chat
completions with a realistic mix: 30 % interactive, 70 % background; three
shared system prompts (1-3 kchar) before user prompts of 200-6000 characters;
8-48 output tokens. For each (system, rate): TTFT p50/p90 (time to the first
content chunk, client side), completed requests per second, shed rate, errors.

    PYTHONPATH=. .venv/bin/python bench/inference_pool.py [--rates 10,20,30] [--seconds 20]

Writes bench/results/inference_pool.md and .json. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fakeprovider.model_server import ModelServerThread, SimConfig  # noqa: E402
from tests.fakes.epp import FakeEpp  # noqa: E402
from tests.harness import GatewayProcess, free_port, gateway_yaml  # noqa: E402

PODS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
SYSTEM_PROMPTS = [f"System prompt {i}: " + ("You are a careful assistant. " * (40 * (i + 1))) for i in range(3)]

MANIFESTS = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
{rules}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: rr, namespace: default}}
spec:
  selector: {{matchLabels: {{app: sim}}}}
  targetPorts: [{{number: {port}}}]
  endpointPickerRef: {{name: rr-epp, port: {{number: {epp}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: rr-epp, namespace: default}}
spec: {{clusterIP: 127.0.0.1}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: picker, namespace: default}}
spec:
  selector: {{matchLabels: {{app: sim}}}}
  targetPorts: [{{number: {port}}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: prio, namespace: default}}
spec:
  selector: {{matchLabels: {{app: sim}}}}
  targetPorts: [{{number: {port}}}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {{name: interactive, namespace: default}}
spec:
  priority: 10
  poolRef: {{name: prio}}
{pods}"""

RULE = """    - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1}}}}}}]
      backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: {name}}}]
"""

POD = """---
apiVersion: v1
kind: Pod
metadata: {{name: sim-{i}, namespace: default, labels: {{app: sim}}}}
status: {{podIP: {ip}}}
"""


@dataclass
class Result:
    ttft: dict[str, list[float]] = field(default_factory=lambda: {"interactive": [], "background": []})
    done: int = 0
    shed: dict[str, int] = field(default_factory=lambda: {"interactive": 0, "background": 0})
    errors: int = 0
    sent: dict[str, int] = field(default_factory=lambda: {"interactive": 0, "background": 0})


async def one(client: httpx.AsyncClient, url: str, rng: random.Random, res: Result) -> None:
    interactive = rng.random() < 0.3
    kind = "interactive" if interactive else "background"
    res.sent[kind] += 1
    body = {
        "model": "sim",
        "stream": True,
        "max_tokens": rng.randint(8, 48),
        "messages": [
            {"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
            {"role": "user", "content": "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(200, 6000)))},
        ],
    }
    headers = {"x-gateway-inference-objective": "interactive"} if interactive else {}
    start = time.monotonic()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            if resp.status_code == 429:
                res.shed[kind] += 1
                return
            if resp.status_code != 200:
                res.errors += 1
                return
            first = None
            async for line in resp.aiter_lines():
                if first is None and line.startswith("data: {"):
                    first = time.monotonic() - start
            if first is not None:
                res.ttft[kind].append(first)
            res.done += 1
    except httpx.HTTPError:
        res.errors += 1


async def drive(url: str, rate: float, seconds: float, seed: int) -> Result:
    rng = random.Random(seed)
    res = Result()
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        tasks = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tasks.append(asyncio.create_task(one(client, url, rng, res)))
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
    return res


def pct(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(res: Result, seconds: float) -> dict[str, object]:
    every = res.ttft["interactive"] + res.ttft["background"]
    sent = sum(res.sent.values())
    return {
        "ttft_p50_s": pct(every, 50),
        "ttft_p90_s": pct(every, 90),
        "interactive_ttft_p90_s": pct(res.ttft["interactive"], 90),
        "background_ttft_p90_s": pct(res.ttft["background"], 90),
        "throughput_rps": res.done / seconds,
        "shed_rate": sum(res.shed.values()) / sent if sent else 0.0,
        "background_shed_rate": res.shed["background"] / res.sent["background"] if res.sent["background"] else 0.0,
        "interactive_shed": res.shed["interactive"],
        "errors": res.errors,
        "sent": sent,
    }


def fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="10,20,30", help="offered requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    port = free_port()
    sims = [
        ModelServerThread(host=ip, port=port, name=f"sim-{i}", config=SimConfig()).start() for i, ip in enumerate(PODS)
    ]
    epp = FakeEpp(endpoints=[f"{ip}:{port}" for ip in PODS]).start()
    gw = GatewayProcess(workers=2)
    rules = "".join(RULE.format(name=n) for n in ("rr", "picker", "prio"))
    pods = "".join(POD.format(i=i, ip=ip) for i, ip in enumerate(PODS))
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + MANIFESTS.format(rules=rules, port=port, epp=epp.port, pods=pods))
    results: dict[str, dict[str, dict[str, object]]] = {}
    try:
        gw.start()
        for rate in rates:
            for system in ("rr", "picker", "prio"):
                res = asyncio.run(drive(f"{gw.url}/{system}/chat/completions", rate, args.seconds, seed=int(rate)))
                summary = summarize(res, args.seconds)
                results.setdefault(system, {})[str(rate)] = summary
                print(f"{system:7} rate {rate:5.1f}: {summary}", flush=True)
                time.sleep(2)  # let the queues drain between runs
    finally:
        gw.stop()
        gw.cleanup()
        epp.stop()
        for s in sims:
            s.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference_pool.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# InferencePool benchmark (bench/inference_pool.py)",
        "",
        f"4 simulated replicas (capacity 4, FIFO queue, prefix cache), {args.seconds:.0f} s per point, open loop.",
        "rr = round-robin EPP (a plain Service); picker = llmgw's picker; prio = picker + InferenceObjective.",
        "",
        "| system | rate (req/s) | TTFT p50 (s) | TTFT p90 (s) | interactive p90 | background p90 "
        "| done/s | shed | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        for system in ("rr", "picker", "prio"):
            s = results[system][str(rate)]
            lines.append(
                f"| {system} | {rate:g} | {fmt(s['ttft_p50_s'])} | {fmt(s['ttft_p90_s'])} | "
                f"{fmt(s['interactive_ttft_p90_s'])} | {fmt(s['background_ttft_p90_s'])} | "
                f"{fmt(s['throughput_rps'])} | {fmt(s['shed_rate'])} | {s['errors']} |"
            )
    (out / "inference_pool.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
