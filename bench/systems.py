"""The systems under test: how each is configured, started, probed and accounted.

Every system exposes the same three client-facing URLs (a non-streaming chat
URL, a streaming chat URL, and the 1 MiB body goes to the first), so a load
generator never knows which system it drives. Non-streaming requests reach the
replay upstream and streams reach the fake provider in every system, with the
same request bytes: what differs is only what sits in between.

- direct: the client talks to the upstreams themselves (the baseline, and
  the upstreams' own rate);
- envoy: plain Envoy, static config, one route per upstream (the floor any
  Envoy-based gateway starts from);
- llmgw: `llmgw run` with an OpenAI route, key injection from a Secret and usage
  accounting (the product as the quickstart configures it);
- llmgw-anthropic: the same, but the AIBackend is an `anthropic` provider, so
  the extproc translates OpenAI -> Anthropic Messages and back;
- llmgw-policies: llmgw with a Gateway-wide AgentgatewayPolicy on: the client's
  API key checked (Strict, a Secret of keys; the load generators' key is one of
  them), and a token and a request limit (`POLICY_TRAFFIC`: too high to refuse
  anything, checked before and charged after every request);
- litellm: the LiteLLM proxy with two uvicorn workers and an `openai/` model;
- portkey: Portkey's open-source gateway (`@portkey-ai/gateway` from npm, Node, one
  process), its own OpenAI-compatible route; the provider and upstream travel in the
  `x-portkey-provider` / `x-portkey-custom-host` request headers (its README's way),
  so the load generators send them (`json_headers`, `stream_headers`).

`classify` names the role of each process of a system (for CPU and RSS per
process kind); the harness reads them from /proc.
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from procs import Launcher, Started, free_port, http, unix_http_get, wait_http
from upstream import CLIENT_KEY, HCM_TYPE, JSON_MODEL, STREAM_MODEL, Upstreams, chat_body, llmgw_command

CHAT_PATH = "/v1/chat/completions"
_JSON_HEADERS = {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"}


@dataclass
class System(abc.ABC):
    """A system under test. `start` fills in the URLs and the root pids."""

    key: str
    label: str
    port: int = 0
    stream_prefix: str = ""
    roots: list[Started] = field(default_factory=list)
    available: bool = True
    note: str = ""
    stream_available: bool = True
    ready_url: str = ""
    admin_socket: str = ""  # Envoy admin (a Unix socket), for the ext_proc counters (llmgw only)
    json_headers: dict[str, str] = field(default_factory=dict)  # extra request headers the clients send
    stream_headers: dict[str, str] = field(default_factory=dict)

    @property
    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.stream_prefix}{CHAT_PATH}"

    @property
    def root_pids(self) -> list[int]:
        return [s.pid for s in self.roots]

    def classify(self, pid: int, cmd: str) -> str:
        exe = cmd.split(" ", 1)[0].rsplit("/", 1)[-1]
        if "envoy" in exe:
            return "envoy"
        if exe == "node":
            return "portkey"
        if " -m extproc" in cmd or "/extproc " in cmd:
            return "extproc"
        if "litellm" in cmd or "multiprocessing" in cmd:
            return "litellm"
        if "fake-provider" in cmd:
            return "upstream"
        if (" run " in cmd and "llmgw" in cmd) or "controlplane.cli" in cmd:
            return "controlplane"
        return "other"

    @abc.abstractmethod
    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        """Start this system's processes through `launcher` (every subclass does)."""

    def extproc_counters(self) -> dict[str, float]:
        """Envoy's ext_proc counters, summed per stage: router (HCM filter) and attempt (upstream filter).

        Why: every message Envoy sends the extproc costs more than the work done with it
        (DESIGN.md), so messages and streams per request explain the CPU figures.
        """
        if not self.admin_socket:
            return {}
        status, body = unix_http_get(self.admin_socket, "/stats?filter=ext_proc", timeout=10)
        out: dict[str, float] = {}
        if status != 200:
            return out
        for line in body.decode().splitlines():
            name, _, value = line.rpartition(": ")
            if not value.isdigit() or ".ext_proc." not in name:
                continue
            stage = "router" if name.startswith("http.") else "attempt" if name.startswith("cluster.") else "other"
            counter = name.rsplit(".ext_proc.", 1)[1]
            if counter in (
                "streams_started",
                "stream_msgs_sent",
                "stream_msgs_received",
                "streams_failed",
                "message_timeouts",
            ):
                key = f"{stage}.{counter}"
                out[key] = out.get(key, 0.0) + int(value)
        return out

    def wait_ready(self, timeout: float = 60.0) -> None:
        """After a child restarted (the supervisor brings Envoy back), wait until the system serves again."""
        if self.ready_url:
            wait_http(self.ready_url, timeout=timeout, proc=self.roots[0] if self.roots else None)

    def probe(self) -> None:
        """One request of each kind must succeed before any load is applied."""
        status, body = http(
            self.json_url,
            method="POST",
            body=chat_body(model=JSON_MODEL),
            headers={**_JSON_HEADERS, **self.json_headers},
        )
        if status != 200 or b'"choices"' not in body:
            raise RuntimeError(f"{self.key}: probe {self.json_url} -> {status} {body[:300]!r}")
        status, body = http(
            self.stream_url,
            method="POST",
            body=chat_body(model=STREAM_MODEL, stream=True),
            headers={**_JSON_HEADERS, **self.stream_headers},
        )
        if status != 200 or b"data:" not in body or b'"content"' not in body:
            self.stream_available = False
            self.note = (self.note + "; " if self.note else "") + f"stream probe -> {status} {body[:160]!r}"


class Direct(System):
    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        # The client talks to the replay upstream for JSON and to the fake for streams.
        self.port = up.replay_port
        self.fake_port = up.fake_port

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}{CHAT_PATH}"


class PlainEnvoy(System):
    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        self.port, admin = free_port(), free_port()
        self.stream_prefix = "/stream"
        cfg = work / "plain-envoy.json"
        cfg.write_text(json.dumps(plain_envoy_config(port=self.port, admin_port=admin, up=up)))
        argv = [envoy, "-c", str(cfg), "--concurrency", "2", "--log-level", "warning", "--use-dynamic-base-id"]
        self.roots = [launcher.start("plain-envoy", argv)]
        wait_http(f"http://127.0.0.1:{admin}/ready", timeout=30, proc=self.roots[0])


def _cluster(name: str, port: int) -> dict[str, object]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "circuit_breakers": {
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
                    ]
                }
            ],
        },
    }


def plain_envoy_config(*, port: int, admin_port: int, up: Upstreams) -> dict[str, object]:
    """A static listener: /stream/... to the fake (prefix stripped), everything else to the replay upstream."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "plain",
        "stream_idle_timeout": "300s",
        "route_config": {
            "name": "plain",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/stream/"},
                            "route": {"cluster": "fake", "prefix_rewrite": "/", "timeout": "300s"},
                        },
                        {"match": {"prefix": "/"}, "route": {"cluster": "replay", "timeout": "300s"}},
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "plain",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [_cluster("replay", up.replay_port), _cluster("fake", up.fake_port)],
        },
    }


# `traffic` of the llmgw-policies system's Gateway-wide policy (what "policies on" costs).
POLICY_TRAFFIC = """    apiKeyAuthentication: {{mode: Strict, secretRef: {{name: bench-client-keys}}}}
    rateLimit:
      local:
        - {{tokens: 2000000000, unit: Minutes}}
        - {{requests: 2000000000, unit: Minutes}}
"""


def policy_manifests() -> str:
    """A Gateway-wide AgentgatewayPolicy (POLICY_TRAFFIC) and the Secret of client keys (200 keys)."""
    keys = "".join(f"  client-{i}: sk-bench-other-{i:04d}\n" for i in range(199))
    return f"""---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {{name: bench, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: bench}}]
  traffic:
{POLICY_TRAFFIC.format()}---
apiVersion: v1
kind: Secret
metadata: {{name: bench-client-keys, namespace: default}}
stringData:
  bench: '{{"key": "{CLIENT_KEY}", "metadata": {{"user": "bench", "team": "perf"}}}}'
{keys}"""


def llmgw_manifests(*, port: int, up: Upstreams, provider: str, policies: bool = False) -> str:
    """Gateway + HTTPRoute + two AIBackends (replay for JSON, fake for streams) + Secret.

    The same shape as examples/quickstart/gateway.yaml: an OpenAI route with the
    key injected from a Secret (secretRef) and usage accounted by the extproc.
    `/stream/...` goes to the fake provider. No URLRewrite: the gateway sends the
    provider's own path for the operation (`/v1/chat/completions`) anyway, and a
    rewrite would cost the route its single-stream "direct" fast path.
    """
    key_name = "x-api-key" if provider == "anthropic" else "Authorization"
    backends = []
    for name, backend_port in (("replay", up.replay_port), ("fake", up.fake_port)):
        if provider == "openai-failover":
            # Two OpenAI providers in priority groups (both the same upstream): a failover
            # cluster, so the attempt stage runs although no translation is needed.
            ai = f"""    groups:
      - providers:
          - {{name: primary, openai: {{}}, host: 127.0.0.1, port: {backend_port}}}
      - providers:
          - {{name: secondary, openai: {{}}, host: 127.0.0.1, port: {backend_port}}}"""
        else:
            ai = f"""    provider:
      {provider}: {{}}
      host: 127.0.0.1
      port: {backend_port}"""
        backends.append(f"""---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: {name}, namespace: default}}
spec:
  ai:
{ai}
  policies:
    auth:
      secretRef: {{name: bench-key, key: {key_name}}}
""")
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: llmgw}}
spec: {{controllerName: llmgw.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: llmgw
  listeners:
    - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /stream}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: fake}}]
    - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: replay}}]
{"".join(backends)}---
apiVersion: v1
kind: Secret
metadata: {{name: bench-key, namespace: default}}
stringData:
  {key_name}: sk-bench-injected-key
""" + (policy_manifests() if policies else "")


class Llmgw(System):
    provider = "openai"
    policies = False

    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        self.port = free_port()
        self.stream_prefix = "/stream"
        base = work / self.key
        shutil.rmtree(base, ignore_errors=True)
        (base / "manifests").mkdir(parents=True)
        (base / "manifests" / "gateway.yaml").write_text(
            llmgw_manifests(port=self.port, up=up, provider=self.provider, policies=self.policies)
        )
        if not self._validate(base / "manifests", py=py, repo=repo):
            return
        ready = free_port()
        self.admin_socket = str(base / "run" / "admin.sock")
        argv = [
            *llmgw_command(py),
            "run",
            "-f",
            str(base / "manifests"),
            "--workers",
            "2",
            "--listen-address",
            "127.0.0.1",
            "--metrics-port",
            str(free_port()),
            "--ready-port",
            str(ready),
            "--run-dir",
            str(base / "run"),
            "--envoy-concurrency",
            "2",
        ]
        env = {**os.environ, "LLMGW_LOG_LEVEL": "WARNING"}
        self.roots = [launcher.start(self.key, argv, env=env, cwd=repo)]
        self.ready_url = f"http://127.0.0.1:{ready}/healthz/ready"
        wait_http(self.ready_url, timeout=60, proc=self.roots[0])

    def _validate(self, manifests: Path, *, py: str, repo: Path) -> bool:
        proc = subprocess.run(
            [*llmgw_command(py), "validate", "-f", str(manifests)],
            capture_output=True,
            cwd=repo,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            self.available = False
            msg = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            self.note = "llmgw validate: " + (msg[0] if msg else f"exit {proc.returncode}")
        return proc.returncode == 0


class LlmgwFailover(Llmgw):
    """OpenAI -> OpenAI through a two-group failover backend (the attempt stage, no translation)."""

    provider = "openai-failover"


class LlmgwPolicies(Llmgw):
    policies = True


class LlmgwAnthropic(Llmgw):
    provider = "anthropic"

    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        if up.anthropic_json is None:
            self.available = False
            self.note = up.anthropic_note
            return
        super().start(launcher, up, work=work, py=py, envoy=envoy, repo=repo)


def litellm_config(up: Upstreams) -> dict[str, object]:
    """Two `openai/` models (replay for JSON, fake for streams); logging, spend and telemetry off."""
    return {
        "model_list": [
            {
                "model_name": JSON_MODEL,
                "litellm_params": {
                    "model": f"openai/{JSON_MODEL}",
                    "api_base": f"{up.replay_url}/v1",
                    "api_key": "sk-bench-injected-key",
                },
            },
            {
                "model_name": STREAM_MODEL,
                "litellm_params": {
                    "model": f"openai/{STREAM_MODEL}",
                    "api_base": f"{up.fake_url}/v1",
                    "api_key": "sk-bench-injected-key",
                },
            },
        ],
        "litellm_settings": {
            "drop_params": True,
            "set_verbose": False,
            "json_logs": False,
            "turn_off_message_logging": True,
            "request_timeout": 300,
        },
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
    }


class LiteLLM(System):
    litellm_bin: str = ""

    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        if not self.litellm_bin or not Path(self.litellm_bin).exists():
            self.available = False
            self.note = f"LiteLLM not installed at {self.litellm_bin or '(unset)'}"
            return
        self.port = free_port()
        cfg = work / "litellm.yaml"
        cfg.write_text(json.dumps(litellm_config(up), indent=1))  # JSON is YAML
        env = {
            **os.environ,
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the price list at start
            "LITELLM_TELEMETRY": "False",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
            "LITELLM_MASTER_KEY": CLIENT_KEY,
        }
        argv = [
            self.litellm_bin,
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num_workers",
            "2",
            # uvicorn's supervisor pings each worker and kills one that does not answer in time;
            # a worker frozen (SIGSTOP) while another system is measured must not count as hung.
            "--timeout_worker_healthcheck",
            "600",
        ]
        self.roots = [launcher.start("litellm", argv, env=env, cwd=work)]
        self.ready_url = f"http://127.0.0.1:{self.port}/health/liveliness"
        wait_http(self.ready_url, timeout=180, proc=self.roots[0])


PORTKEY_MAIN = Path("node_modules/@portkey-ai/gateway/build/start-server.js")


class Portkey(System):
    """Portkey's gateway under Node (`bench/run` installs it into `bench/.portkey`).

    One Node process: the package's server has no worker/cluster option, so on 2 cores it
    uses one for JavaScript (plus libuv's threads); the tables say so next to its figures.
    """

    portkey_dir: str = ""

    def start(self, launcher: Launcher, up: Upstreams, *, work: Path, py: str, envoy: str, repo: Path) -> None:
        main = Path(self.portkey_dir) / PORTKEY_MAIN
        node = shutil.which("node")
        if node is None or not main.exists():
            self.available = False
            self.note = f"Portkey not installed ({'no node on PATH' if node is None else f'no {main}'})"
            return
        self.port = free_port()
        self.json_headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{up.replay_url}/v1"}
        self.stream_headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{up.fake_url}/v1"}
        # production: no console UI routes; --headless: no UI log stream.
        env = {**os.environ, "NODE_ENV": "production"}
        argv = [node, str(main), f"--port={self.port}", "--headless"]
        self.roots = [launcher.start("portkey", argv, env=env, cwd=work)]
        self.ready_url = f"http://127.0.0.1:{self.port}/"
        wait_http(self.ready_url, timeout=60, proc=self.roots[0])


def all_systems(*, litellm_bin: str, portkey_dir: str = "") -> list[System]:
    litellm = LiteLLM("litellm", "LiteLLM proxy (2 workers)")
    litellm.litellm_bin = litellm_bin
    portkey = Portkey("portkey", "Portkey gateway (Node, 1 process)")
    portkey.portkey_dir = portkey_dir
    return [
        Direct("direct", "direct to upstream"),
        PlainEnvoy("envoy", "plain Envoy"),
        Llmgw("llmgw", "llmgw (OpenAI route)"),
        LlmgwAnthropic("llmgw-anthropic", "llmgw (OpenAI -> Anthropic)"),
        LlmgwPolicies("llmgw-policies", "llmgw, API key policy on"),
        litellm,
        portkey,
    ]
