"""agentgateway's standalone config files, as its docs print them, run by `llmgw run -f` (issue 12).

The files in `agentgateway/` are copied verbatim from agentgateway's docs
(github.com/agentgateway/website):

- `azure_*.yaml`: the Azure provider page's "Advanced configuration" tabs in
  the `binds` format (content/docs/standalone/latest/llm/providers/azure.md
  before commit 3c9faa84): Foundry with hostOverride/pathOverride/urlRewrite
  authority/backendTLS and a user-assigned managed identity, client secret,
  system- and user-assigned managed identity, workload identity.
- `openai_binds.yaml`, `anthropic_binds.yaml`: the OpenAI and Anthropic
  provider pages in the `binds` format (before commit 40fa84a0).
- `quickstart_openai_llm.yaml`, `anthropic_llm.yaml`: the current LLM
  quickstart and Anthropic page, in the simplified `llm.models` format.

A test changes only what points at the world: ports, hosts (the fake provider,
the local Entra fake) and the placeholders the docs ask the reader to fill in.
The official SDKs talk to the real gateway; the fakes record the credential
the gateway injected.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from controlplane.compile import compile_paths
from fakeprovider import FakeProviderThread
from tests.fakes.entra import CLIENT_ASSERTION_TYPE, FakeEntra
from tests.harness import REPO, GatewayProcess, free_port, wait_until

SEEDS = Path(__file__).parent / "agentgateway"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_CLIENT = "5e1f0000-aaaa-4bbb-8ccc-000000000077"
SP_SECRET = "seed-sp-secret~Value"
WORKLOAD_CLIENT = "0a0b0c0d-1111-4222-8333-000000000078"
FEDERATED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2VlZCJ9.c2ln"
MI_CLIENT = "mi-client-0077"
MI_OBJECT = "mi-object-0078"
OPENAI_KEY = "sk-seed-openai-key"
ANTHROPIC_KEY = "sk-ant-seed-key"
FOUNDRY_PATH = "/models/chat/completions?api-version=2024-05-01-preview"
_AMBIENT_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")


def seed(name: str, *edits: tuple[str, str]) -> str:
    """A seed file with `edits` (old, new) applied; each `old` must be in the file as printed."""
    text = (SEEDS / name).read_text()
    for old, new in edits:
        assert old in text, f"{old!r} is not in {name}"
        text = text.replace(old, new)
    return text


def port_edit(port: int) -> tuple[str, str]:
    return ("port: 3000", f"port: {port}")


def llm_edits(port: int, base_url: str) -> list[tuple[str, str]]:
    """The simplified format has no port or host in the docs' examples: add them."""
    return [("llm:\n", f"llm:\n  port: {port}\n"), ("    params:\n", f"    params:\n      baseUrl: {base_url}\n")]


def _gateway(env: dict[str, str]) -> GatewayProcess:
    gw = GatewayProcess(workers=1)
    for key in list(gw.env):  # only what the test sets: no ambient Azure configuration
        if key.startswith(_AMBIENT_PREFIXES):
            del gw.env[key]
    gw.env.update(env)
    return gw


def _chat(port: int, prefix: str = "/v1", model: str = "client-model") -> str:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}{prefix}", api_key="client-key", max_retries=0)
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi seed"}])
    return resp.choices[0].message.content or ""


# -- workload identity pod: client secret, workload identity, keys ---------------------------


@dataclass
class Pod:
    gw: GatewayProcess
    fp: FakeProviderThread
    entra: FakeEntra
    ports: dict[str, int]
    tls_fp: FakeProviderThread | None = None  # an upstream that speaks TLS with a test CA


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    entra = FakeEntra(tmp_path_factory.mktemp("entra")).start()
    fp = FakeProviderThread(name="seed").start()
    env = entra.workload_env(client_id=WORKLOAD_CLIENT, tenant_id=TENANT, token=FEDERATED_TOKEN)
    gw = _gateway({**env, "OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY})
    ports = {name: free_port() for name in ("secret", "workload", "openai", "quickstart", "anthropic")}
    upstream = f"127.0.0.1:{fp.port}"
    files = {
        "secret": seed(
            "azure_client_secret.yaml",
            port_edit(ports["secret"]),
            ("<your-azure-endpoint.com:443>", upstream),
            ("<your-tenant-id>", TENANT),
            ("<your-client-id>", SP_CLIENT),
            ("<your-client-secret>", SP_SECRET),
        ),
        "workload": seed(
            "azure_workload_identity.yaml", port_edit(ports["workload"]), ("<your-azure-endpoint.com:443>", upstream)
        ),
        "openai": seed(
            "openai_binds.yaml",
            port_edit(ports["openai"]),
            ("name: openai\n", f'name: openai\n          hostOverride: "{upstream}"\n'),
        ),
        "quickstart": seed("quickstart_openai_llm.yaml", *llm_edits(ports["quickstart"], f"http://{upstream}/v1")),
        "anthropic": seed("anthropic_llm.yaml", *llm_edits(ports["anthropic"], f"http://{upstream}")),
    }
    for name, text in files.items():
        gw.write(f"{name}.yaml", text)
    gw.start()
    yield Pod(gw, fp, entra, ports)
    try:
        assert gw.stop() == 0
    finally:
        gw.cleanup()
        fp.stop()
        entra.stop()


def _bearer(fp: FakeProviderThread) -> str:
    auth = fp.requests[-1].headers.get("authorization", "")
    assert auth.startswith("Bearer entra-at-"), auth
    return auth.removeprefix("Bearer ")


def test_azure_client_secret(pod: Pod) -> None:
    pod.fp.clear()
    assert _chat(pod.ports["secret"]) == "Hello from seed: hi seed"
    [rec] = pod.fp.requests
    assert rec.path == "/v1/chat/completions" and rec.json["model"] == "gpt-4"  # openAI.model fixes it
    [grant] = [g for g in pod.entra.grants if g.token == _bearer(pod.fp)]
    assert grant.tenant == TENANT and grant.form["client_id"] == SP_CLIENT
    assert grant.form["client_secret"] == SP_SECRET
    assert SP_SECRET not in pod.gw.config_dump() and SP_SECRET not in pod.gw.log()


def test_azure_workload_identity(pod: Pod) -> None:
    pod.fp.clear()
    assert _chat(pod.ports["workload"]) == "Hello from seed: hi seed"
    [grant] = [g for g in pod.entra.grants if g.token == _bearer(pod.fp)]
    assert grant.form["client_id"] == WORKLOAD_CLIENT
    assert grant.form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert grant.form["client_assertion"] == FEDERATED_TOKEN


def test_openai_page_binds_key(pod: Pod) -> None:
    pod.fp.clear()
    assert _chat(pod.ports["openai"]) == "Hello from seed: hi seed"
    [rec] = pod.fp.requests
    assert rec.headers["authorization"] == f"Bearer {OPENAI_KEY}"  # `key: "$OPENAI_API_KEY"`
    assert rec.json["model"] == "gpt-3.5-turbo"


def test_llm_quickstart_openai(pod: Pod) -> None:
    pod.fp.clear()
    assert _chat(pod.ports["quickstart"], model="gpt-3.5-turbo") == "Hello from seed: hi seed"
    [rec] = pod.fp.requests
    assert rec.path == "/v1/chat/completions" and rec.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{pod.ports['quickstart']}/v1", api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-3.5-turbo"]  # the model the config names
    with pytest.raises(openai.NotFoundError):  # a model the config does not serve
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert len(pod.fp.requests) == 1


def test_llm_anthropic_wildcard(pod: Pod) -> None:
    pod.fp.clear()
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{pod.ports['anthropic']}", api_key="c", max_retries=0)
    msg = client.messages.create(
        model="claude-opus-4-6", max_tokens=100, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert msg.content[0].type == "text" and "Hello!" in msg.content[0].text
    [rec] = pod.fp.requests
    assert rec.path == "/v1/messages" and rec.headers["x-api-key"] == ANTHROPIC_KEY
    assert rec.json["model"] == "claude-opus-4-6"  # name "*": any model, sent as asked
    assert ANTHROPIC_KEY not in pod.gw.config_dump()


def test_config_file_edit_reloads_and_a_bad_edit_names_the_field(pod: Pod) -> None:
    """Hot reload of a config file: a new model appears; an unsupported field is rejected by path."""
    port, upstream = pod.ports["quickstart"], f"127.0.0.1:{pod.fp.port}"
    base = seed("quickstart_openai_llm.yaml", *llm_edits(port, f"http://{upstream}/v1"))
    second = (
        "  - name: gpt-4o\n    provider: openAI\n    params:\n"
        f'      baseUrl: http://{upstream}/v1\n      apiKey: "$OPENAI_API_KEY"\n'
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    pod.gw.write("quickstart.yaml", base + second)
    wait_until(lambda: {m.id for m in client.models.list()} == {"gpt-3.5-turbo", "gpt-4o"}, what="the new model")

    def served() -> bool:  # the workers' config arrives a moment before Envoy's routes
        try:
            return _chat(port, model="gpt-4o") == "Hello from seed: hi seed"
        except openai.NotFoundError:
            return False

    wait_until(served, what="the new model's route")
    assert pod.fp.requests[-1].json["model"] == "gpt-4o"
    pod.gw.write("quickstart.yaml", base + second + "    guardrails: {request: []}\n")
    wait_until(lambda: "llm.models[1].guardrails: is not supported by llmgw" in pod.gw.log(), what="the rejection")
    assert _chat(port, model="gpt-4o") == "Hello from seed: hi seed"  # the last good config still serves
    pod.gw.write("quickstart.yaml", base)


# -- managed identity (IMDS) pod: system, user-assigned, Foundry over TLS ---------------------


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    import ssl

    import trustme

    tmp = tmp_path_factory.mktemp("vm")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    entra = FakeEntra(tmp).start()
    fp = FakeProviderThread(name="vm").start()
    foundry = FakeProviderThread(name="foundry", ssl_context=ctx).start()
    gw = _gateway({**entra.imds_env(), "SSL_CERT_FILE": str(ca_file)})
    ports = {name: free_port() for name in ("system", "user", "foundry")}
    upstream = f"127.0.0.1:{fp.port}"
    gw.write(
        "system.yaml",
        seed(
            "azure_system_managed_identity.yaml",
            port_edit(ports["system"]),
            ("your-azure-endpoint.com:443", upstream),
        ),
    )
    gw.write(
        "user.yaml",
        seed(
            "azure_user_managed_identity.yaml",
            port_edit(ports["user"]),
            ("<your-azure-endpoint.com:443>", upstream),
            ("<your-managed-identity-client-id>", MI_CLIENT),
        ),
    )
    gw.write(
        "foundry.yaml",
        seed(
            "azure_foundry.yaml",
            port_edit(ports["foundry"]),
            ("ai-gateway-foundry-eastus2.services.ai.azure.com:443", f"localhost:{foundry.port}"),
            ("<object-id>", MI_OBJECT),
        ),
    )
    gw.start()
    yield Pod(gw, fp, entra, ports, tls_fp=foundry)
    try:
        assert gw.stop() == 0
    finally:
        gw.cleanup()
        fp.stop()
        foundry.stop()
        entra.stop()


@pytest.mark.parametrize(("name", "selector"), [("system", {}), ("user", {"client_id": MI_CLIENT})])
def test_azure_managed_identity(vm: Pod, name: str, selector: dict[str, str]) -> None:
    vm.fp.clear()
    assert _chat(vm.ports[name]) == "Hello from vm: hi seed"
    token = _bearer(vm.fp)
    [req] = [r for r in vm.entra.mi_requests if r.token == token]
    ids = {k: v for k, v in req.query.items() if k in ("client_id", "object_id", "msi_res_id")}
    assert ids == selector


def test_azure_foundry_host_and_path_override_over_tls(vm: Pod) -> None:
    """The Foundry tab: /azure, hostOverride + pathOverride, backendTLS {}, user-assigned identity by objectId."""
    assert vm.tls_fp is not None
    vm.tls_fp.clear()
    assert _chat(vm.ports["foundry"], prefix="/azure") == "Hello from foundry: hi seed"
    [rec] = vm.tls_fp.requests  # reached over TLS, verified against SSL_CERT_FILE's CA
    assert rec.path == FOUNDRY_PATH and rec.json["model"] == "gpt-5-mini"
    assert rec.headers["host"].startswith("localhost")  # urlRewrite.authority: auto
    token = _bearer(vm.tls_fp)
    [req] = [r for r in vm.entra.mi_requests if r.token == token]
    assert req.query.get("object_id") == MI_OBJECT


# -- validation: what is reported, where --------------------------------------------------------


def _compile(tmp_path: Path, text: str, name: str = "config.yaml", **env: str):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(text)
    return compile_paths([path], environ=env)


def _provider(compiled):  # type: ignore[no-untyped-def]
    assert compiled.ok, [str(p) for p in compiled.problems]
    [backend] = compiled.ir.backends
    [provider] = backend.providers
    return provider


# The Azure page as it is today: routes under `gateways`, the `azure` provider kind, the
# client secret in snake_case, and the simplified `llm.models` tabs.
CURRENT_AZURE_PAGE = [
    ("llm_azure_foundry_implicit.yaml", "your-resource-name.services.ai.azure.com", None, None),
    ("llm_azure_foundry_api_key.yaml", "your-resource-name.services.ai.azure.com", None, "api-key=azure-key"),
    ("llm_azure_openai_implicit.yaml", "your-resource-name.openai.azure.com", None, None),
    ("routes_azure_foundry_implicit.yaml", "your-resource-name.services.ai.azure.com", None, None),
    ("routes_azure_foundry_client_secret.yaml", "your-resource-name.services.ai.azure.com", "client_secret", None),
    ("routes_azure_client_secret.yaml", "your-resource-name.openai.azure.com", "client_secret", None),
    ("routes_azure_system_managed_identity.yaml", "your-resource-name.openai.azure.com", "managed_identity", None),
    ("routes_azure_user_managed_identity.yaml", "your-resource-name.openai.azure.com", "managed_identity", None),
    ("routes_azure_workload_identity.yaml", "your-resource-name.openai.azure.com", "workload_identity", None),
    ("routes_azure_claude_foundry.yaml", "your-foundry-resource.services.ai.azure.com", None, "api-key=your-api-key"),
]


@pytest.mark.parametrize(("name", "host", "mode", "header"), CURRENT_AZURE_PAGE)
def test_current_azure_page_as_printed(name: str, host: str, mode: str | None, header: str | None) -> None:
    provider = _provider(compile_paths([SEEDS / name], environ={"AZURE_API_KEY": "azure-key"}))
    assert provider.kind == "azure" and provider.host == host and provider.port == 443 and provider.tls
    assert provider.auth is not None
    params = dict(provider.auth.params)
    if header:  # an API key (`$AZURE_API_KEY` or inline), in the header the config names (or Azure's api-key)
        assert f"{provider.auth.header}={provider.auth.value}" == header
    else:  # Entra ID: explicit mode, or the default chain when the config sets none
        assert provider.auth.kind == "azure" and params.get("mode") == mode
    if mode == "client_secret":
        assert params["tenant_id"] == "<your-tenant-id>" and params["client_secret"] == "<your-client-secret>"
    if name == "routes_azure_user_managed_identity.yaml":
        assert params["client_id"] == "<your-managed-identity-client-id>"


def test_binds_with_groups_overrides_and_tls() -> None:
    """agentgateway's own LLM test config: priority groups, hostOverride/pathOverride, inline key, backendTLS."""
    compiled = compile_paths([SEEDS / "agw_test_llm_config.yaml"])
    assert compiled.ok, [str(p) for p in compiled.problems]
    [backend] = compiled.ir.backends
    by_name = {p.name: p for p in backend.providers}
    assert [(p.name, p.priority) for p in backend.providers] == [("anthropic", 0), ("openai", 1), ("overrides", 1)]
    over = by_name["overrides"]
    assert (over.host, over.port, over.path, over.model) == (
        "example.com",
        443,
        "/api/v1/chat/completions",
        "some-model",
    )
    assert over.tls is not None and over.tls.sni == "example.com"
    assert over.auth is not None and over.auth.value == "example-key" and over.auth.header == "authorization"
    assert by_name["anthropic"].host == "api.anthropic.com" and by_name["anthropic"].auth is None


def test_placeholders_left_in_are_reported() -> None:
    compiled = compile_paths([SEEDS / "azure_user_managed_identity.yaml"])
    assert [(p.field, p.message) for p in compiled.problems] == [
        (
            "binds[0].listeners[0].routes[0].backends[0].ai.hostOverride",
            "must be host:port (a DNS name or IP address and a port), got '<your-azure-endpoint.com:443>'",
        )
    ]


UNSUPPORTED = """
binds:
- port: 3000
  tunnelProtocol: proxy
  listeners:
  - name: main
    protocol: HTTP
    policies: {cors: {allowOrigins: ["*"]}}
    routes:
    - name: chat
      matches: [{path: {pathPrefix: /v1}, headers: [{name: x-team, value: {exact: a}}]}]
      policies:
        cors: {allowOrigins: ["*"]}
        ai: {promptGuard: {}}
        urlRewrite: {authority: none}
        retry: {codes: [429], condition: "true"}
        backendAuth: {passthrough: {}}
      backends:
      - ai:
          name: openai
          tokenize: true
          provider: {openAI: {model: gpt-4o, moderation: {}}}
          policies:
            backendTLS: {root: /etc/ca.pem, insecure: true}
            backendAuth: {key: sk-k, location: {header: {name: api-key}}}
            http: {version: HTTP2, requestTimeout: 30s}
            tcp: {connectTimeout: 5s, keepalives: {enabled: true}}
            health: {unhealthyExpression: "true"}
      - host: example.com:8080
      - ai:
          name: vertex
          provider: {vertex: {projectId: p}}
          policies:
            backendAuth: {gcp: {type: idToken, audience: x}}
  - name: tcp
    protocol: TCP
policies:
- name: p
mcp: {port: 3001}
"""


def test_unsupported_fields_are_reported_with_their_path(tmp_path: Path) -> None:
    path = tmp_path / "agw.yaml"
    path.write_text(UNSUPPORTED)
    compiled = compile_paths([path])
    route = "binds[0].listeners[0].routes[0]"
    expected = {
        "policies": "is not supported by llmgw",
        "mcp.port": "is not supported by llmgw",
        "binds[0].tunnelProtocol": "is not supported by llmgw: only 'direct'",
        "binds[0].listeners[0].policies": "is not supported by llmgw",
        f"{route}.policies.cors": "is not supported by llmgw",
        f"{route}.policies.ai": "is not supported by llmgw",
        f"{route}.policies.urlRewrite.authority": "is not supported by llmgw: only auto or {host: ...}",
        f"{route}.policies.retry.condition": "is not supported by llmgw",
        f"{route}.policies.backendAuth.passthrough": "is not supported by llmgw",
        f"{route}.backends[0].ai.tokenize": "is not supported by llmgw",
        f"{route}.backends[0].ai.provider.openAI.moderation": "is not supported by llmgw",
        f"{route}.backends[0].ai.policies.backendTLS.root": "is not supported by llmgw",
        f"{route}.backends[0].ai.policies.backendAuth.location": "is not supported by llmgw: "
        "write it inside key: {value, location}",
        f"{route}.backends[0].ai.policies.http.version": "is not supported by llmgw",
        f"{route}.backends[0].ai.policies.tcp.keepalives": "is not supported by llmgw",
        f"{route}.backends[0].ai.policies.health": "is not supported by llmgw",
        f"{route}.backends[1].host": "is not supported by llmgw",
        f"{route}.backends[2].ai.policies.backendAuth.gcp.audience": "is not supported by llmgw",
        f"{route}.backends[2].ai.policies.backendAuth.gcp.type": "is not supported by llmgw: "
        "llmgw fetches access tokens only",
        "binds[0].listeners[1].protocol": "is not supported by llmgw: only HTTP listeners",
    }
    got = {p.field: p.message for p in compiled.problems}
    assert got == expected
    assert all(p.obj == "agentgateway config" and p.file == str(path) for p in compiled.problems)
    assert {p.reason for p in compiled.problems} == {"Unsupported"}


def test_problems_on_generated_objects_name_the_users_field(tmp_path: Path) -> None:
    text = """
binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - ai:
          name: azure
          provider: {azure: {model: gpt-4o}}
          policies:
            backendAuth: {key: "$NO_SUCH_KEY"}
      - ai:
          name: openai
          provider: {openAI: {}}
          policies:
            http: {requestTimeout: soon}
"""
    path = tmp_path / "agw.yaml"
    path.write_text(text)
    compiled = compile_paths([path], environ={})
    ai = "binds[0].listeners[0].routes[0].backends[0].ai"
    ai1 = "binds[0].listeners[0].routes[0].backends[1].ai"
    assert sorted((p.field, p.message) for p in compiled.problems) == [
        (f"{ai}.hostOverride", "is required for the 'azure' provider"),
        (f"{ai}.policies.backendAuth.key", "environment variable NO_SUCH_KEY is not set"),
        (f"{ai}.provider.azure.resourceName", "is required"),
        (f"{ai1}.policies.http.requestTimeout", "must be a positive duration such as 30s or 500ms, got 'soon'"),
    ]
    assert {p.obj for p in compiled.problems} == {"agentgateway config"}


def test_validate_cli_on_a_standalone_config() -> None:
    def validate(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controlplane.cli", "validate", "-f", str(SEEDS / name)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ANTHROPIC_API_KEY": "k"},
        )

    ok = validate("azure_foundry.yaml")
    assert (ok.returncode, ok.stdout) == (0, "ok: 1 listener(s), 1 backend(s), 1 route match(es)\n")
    bad = validate("anthropic_binds.yaml")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == (
        f"{SEEDS / 'anthropic_binds.yaml'}: agentgateway config: "
        "binds[0].listeners[0].routes[0].backends[0].ai.routes: is not supported by llmgw: "
        "llmgw serves the operations it knows for the provider by their path and refuses other paths\n"
        "1 problem(s)\n"
    )


def test_llm_provider_references_and_presets(tmp_path: Path) -> None:
    """agentgateway's multiple-LLMs page: models that reference `llm.providers`; a preset (groq)."""
    text = """
llm:
  providers:
  - name: openai-prod
    provider: openAI
    params:
      apiKey: "$OPENAI_API_KEY"
  models:
  - name: fast
    provider:
      reference: openai-prod
    params:
      model: gpt-4o-mini
  - name: "*"
    provider: groq
    params:
      apiKey: "$GROQ_API_KEY"
  - name: wrong
    provider: {reference: openai-prod}
    params: {model: gpt-4o, baseUrl: "http://elsewhere"}
  - name: missing
    provider: {reference: nobody}
"""
    path = tmp_path / "agw.yaml"
    path.write_text(text)
    compiled = compile_paths([path], environ={"OPENAI_API_KEY": "sk-o", "GROQ_API_KEY": "gsk-g"})
    assert sorted((p.field, p.message) for p in compiled.problems) == [
        ("llm.models[2].params", "a model that references a provider can only set params.model"),
        ("llm.models[3].provider.reference", "no llm.providers entry named 'nobody'"),
    ]
    assert compiled.ir is not None
    providers = {p.model or p.kind: p for b in compiled.ir.backends for p in b.providers}
    fast, groq = providers["gpt-4o-mini"], providers["custom"]
    assert (fast.kind, fast.host, fast.auth and fast.auth.value) == ("openai", "api.openai.com", "sk-o")
    assert (groq.host, groq.port, groq.path_prefix, groq.tls is not None) == ("api.groq.com", 443, "/openai/v1", True)
    assert groq.auth is not None and groq.auth.value == "gsk-g" and groq.auth.header == "authorization"
