"""Microsoft Entra ID credentials end to end: the real gateway, the real azure-identity, local fakes.

Each gateway runs `llmgw run` with the environment a pod would have: `AZURE_AUTHORITY_HOST`
pointing at the local HTTPS Entra endpoint (tests/fakes/entra.py), its test CA trusted through
`REQUESTS_CA_BUNDLE`, and the workload-identity variables (`AZURE_CLIENT_ID`,
`AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`) or the managed-identity endpoint variable.
The assertions look at both ends: what the identity endpoint received (client secret,
federated token, managed-identity selector, scope) and what reached the fake Azure OpenAI
provider (`Authorization: Bearer <the token that endpoint issued>`).

Managed identity runs in its own gateway: with the workload-identity variables present,
azure-identity's ManagedIdentityCredential uses workload identity (as on AKS).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.fakes.entra import CLIENT_ASSERTION_TYPE, FakeEntra
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_CLIENT = "5e1f0000-aaaa-4bbb-8ccc-000000000001"
SP_SECRET = "sp-secret-Value-1~abc"
BAD_SECRET = "expired-secret-Value-9~xyz"
WORKLOAD_CLIENT = "0a0b0c0d-1111-4222-8333-000000000002"
FEDERATED_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bGxtZ3cifQ.c2ln"
COGNITIVE = "https://cognitiveservices.azure.com/.default"
FOUNDRY = "https://ai.azure.com/.default"
SEED_PATH = "/models/chat/completions?api-version=2024-05-01-preview"
UAMI = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/llmgw"
_AMBIENT_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")

SECRET_BACKEND = """
---
# Client secret from a Secret, Azure OpenAI v1 API.
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: secret}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies: {{auth: {{azure: {{secretRef: {{name: entra-sp}}}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: entra-sp}}
stringData: {{tenantID: {tenant}, clientID: {sp_client}, clientSecret: {sp_secret}}}
"""

ENTRA_BACKENDS = (
    SECRET_BACKEND
    + """---
# Workload identity, Azure AI Foundry resource (scope https://ai.azure.com/.default).
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: workload}}
spec:
  ai:
    provider:
      azure: {{resourceName: my-foundry, resourceType: Foundry, projectName: proj}}
      host: 127.0.0.1
      port: {up}
  policies: {{auth: {{azure: {{workloadIdentity: {{}}}}}}}}
---
# The seed scenario: Foundry, no auth at all -> the default chain (workload identity here).
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: foundry}}
spec:
  ai:
    provider:
      azureopenai: {{endpoint: my-foundry.services.ai.azure.com}}
      host: 127.0.0.1
      port: {up}
      path: {seed_path}
---
# agentgateway's standalone names, as written.
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: agw}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies:
    auth:
      azure:
        explicitConfig:
          clientSecret: {{tenantId: {tenant}, clientId: agw-client, clientSecret: agw-inline-secret}}
---
# A client secret Entra refuses.
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: badsecret}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies: {{auth: {{azure: {{secretRef: {{name: entra-bad-sp}}}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: entra-bad-sp}}
stringData: {{tenantID: {tenant}, clientID: {sp_client}, clientSecret: {bad_secret}}}
"""
)

MI_BACKENDS = """
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: system}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies: {{auth: {{azure: {{managedIdentity: {{}}}}}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: user}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies: {{auth: {{azure: {{managedIdentity: {{objectId: mi-object-42}}}}}}}}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {{name: agwmi}}
spec:
  ai:
    provider: {{azureopenai: {{endpoint: my-res.openai.azure.com}}, host: 127.0.0.1, port: {up}}}
  policies:
    auth: {{azure: {{explicitConfig: {{managedIdentity: {{userAssignedIdentity: {{resourceId: "{uami}"}}}}}}}}}}
"""


def _manifests(port: int, backends: str, names: list[tuple[str, str]], **fmt: object) -> str:
    """The Gateway, a route `/<name>` (prefix rewritten to `/`) per (name, kind), then `backends`."""
    rules = [route_rule(f"/{n}", n, rewrite=True, kind=k) for n, k in names]
    return gateway_yaml(port=port) + http_route_yaml(*rules) + backends.format(**fmt)


def _gateway(env: dict[str, str], workers: int = 2) -> GatewayProcess:
    gw = GatewayProcess(workers=workers)
    for key in list(gw.env):  # only what the test sets: no ambient Azure configuration
        if key.startswith(_AMBIENT_PREFIXES):
            del gw.env[key]
    gw.env.update(env)
    return gw


@dataclass
class Setup:
    gw: GatewayProcess
    fp: FakeProviderThread
    entra: FakeEntra


@pytest.fixture(scope="module")
def entra_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    entra = FakeEntra(tmp_path_factory.mktemp("entra")).start()
    fp = FakeProviderThread(name="azure").start()
    gw = _gateway(entra.workload_env(client_id=WORKLOAD_CLIENT, tenant_id=TENANT, token=FEDERATED_TOKEN))
    entra.reject_secrets.add(BAD_SECRET)
    names = [
        ("secret", "AIBackend"),
        ("workload", "AIBackend"),
        ("foundry", "AIBackend"),
        ("agw", "AgentgatewayBackend"),
        ("badsecret", "AIBackend"),
    ]
    text = _manifests(
        gw.port,
        ENTRA_BACKENDS,
        names,
        up=fp.port,
        tenant=TENANT,
        sp_client=SP_CLIENT,
        sp_secret=SP_SECRET,
        bad_secret=BAD_SECRET,
        seed_path=SEED_PATH,
    )
    gw.write("gw.yaml", text)
    gw.start()
    yield Setup(gw, fp, entra)
    try:
        assert gw.stop() == 0
    finally:
        gw.cleanup()
        fp.stop()
        entra.stop()


def _grant_for(entra: FakeEntra, token: str):  # type: ignore[no-untyped-def]
    [grant] = [g for g in entra.grants if g.token == token]
    return grant


def _bearer(fp: FakeProviderThread) -> str:
    auth = fp.requests[-1].headers.get("authorization", "")
    assert auth.startswith("Bearer entra-at-"), auth
    return auth.removeprefix("Bearer ")


def _chat(gw: GatewayProcess, prefix: str) -> str:
    client = openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key="client-key", max_retries=0)
    resp = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi entra"}])
    return resp.choices[0].message.content or ""


def test_client_secret_token_reaches_the_provider(entra_gw: Setup) -> None:
    gw, fp, entra = entra_gw.gw, entra_gw.fp, entra_gw.entra
    fp.clear()
    assert _chat(gw, "secret") == "Hello from azure: hi entra"
    [rec] = fp.requests
    assert rec.path == "/openai/v1/chat/completions"
    assert "api-key" not in rec.headers
    grant = _grant_for(entra, _bearer(fp))
    assert grant.tenant == TENANT and grant.form["client_id"] == SP_CLIENT
    assert grant.form["client_secret"] == SP_SECRET and grant.scope == COGNITIVE
    assert SP_SECRET not in gw.config_dump()


def test_workload_identity_token_reaches_the_provider(entra_gw: Setup) -> None:
    gw, fp, entra = entra_gw.gw, entra_gw.fp, entra_gw.entra
    fp.clear()
    assert _chat(gw, "workload") == "Hello from azure: hi entra"
    assert fp.requests[-1].path == "/api/projects/proj/openai/v1/chat/completions"
    grant = _grant_for(entra, _bearer(fp))
    assert grant.tenant == TENANT and grant.form["client_id"] == WORKLOAD_CLIENT
    assert grant.form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert grant.form["client_assertion"] == FEDERATED_TOKEN  # the federated token file's content
    assert grant.scope == FOUNDRY


def test_agentgateway_explicit_config_client_secret(entra_gw: Setup) -> None:
    gw, fp, entra = entra_gw.gw, entra_gw.fp, entra_gw.entra
    fp.clear()
    assert _chat(gw, "agw") == "Hello from azure: hi entra"
    grant = _grant_for(entra, _bearer(fp))
    assert grant.form["client_id"] == "agw-client" and grant.form["client_secret"] == "agw-inline-secret"


def test_seed_foundry_default_chain_workload_identity_no_app_key(entra_gw: Setup) -> None:
    """Gateway + HTTPRoute /foundry (rewrite to /) + azureopenai backend with no auth; the app holds no key."""
    gw, fp, entra = entra_gw.gw, entra_gw.fp, entra_gw.entra
    fp.clear()
    sent: list[httpx.Headers] = []
    client = openai.OpenAI(
        base_url=f"{gw.url}/foundry",
        api_key="unused",  # the SDK insists on one; the request below omits the header entirely
        max_retries=0,
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [lambda r: sent.append(r.headers)]}),
    )
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "compliance says entra only"}],
        extra_headers={"Authorization": openai.Omit()},
    )
    assert resp.choices[0].message.content == "Hello from azure: compliance says entra only"
    assert [h for h in sent if "authorization" in h or "api-key" in h] == []  # the app sent no key
    [rec] = fp.requests
    assert rec.path == SEED_PATH
    grant = _grant_for(entra, _bearer(fp))
    assert grant.form["client_assertion"] == FEDERATED_TOKEN and grant.form["client_id"] == WORKLOAD_CLIENT
    assert grant.scope == FOUNDRY  # *.services.ai.azure.com
    assert "client_secret" not in grant.form


def test_refused_credential_is_a_clear_502_without_the_secret(entra_gw: Setup) -> None:
    gw, fp = entra_gw.gw, entra_gw.fp
    fp.clear()
    resp = httpx.post(
        f"{gw.url}/badsecret/v1/chat/completions",
        timeout=15,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "credential_error"
    assert "Azure client secret (secret default/entra-bad-sp" in err["message"]
    assert "AADSTS7000215" in err["message"] and BAD_SECRET not in resp.text
    assert fp.requests == []
    assert BAD_SECRET not in gw.log()


# -- managed identity -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mi_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    entra = FakeEntra(tmp_path_factory.mktemp("mi")).start()
    fp = FakeProviderThread(name="azure").start()
    gw = _gateway(entra.imds_env())
    names = [("system", "AIBackend"), ("user", "AIBackend"), ("agwmi", "AgentgatewayBackend")]
    gw.write("gw.yaml", _manifests(gw.port, MI_BACKENDS, names, up=fp.port, uami=UAMI))
    gw.start()
    yield Setup(gw, fp, entra)
    try:
        assert gw.stop() == 0
    finally:
        gw.cleanup()
        fp.stop()
        entra.stop()


@pytest.mark.parametrize(
    ("prefix", "selector"),
    [("system", {}), ("user", {"object_id": "mi-object-42"}), ("agwmi", {"msi_res_id": UAMI})],
)
def test_managed_identity_token_reaches_the_provider(mi_gw: Setup, prefix: str, selector: dict[str, str]) -> None:
    gw, fp, entra = mi_gw.gw, mi_gw.fp, mi_gw.entra
    fp.clear()
    assert _chat(gw, prefix) == "Hello from azure: hi entra"
    token = _bearer(fp)
    [req] = [r for r in entra.mi_requests if r.token == token]
    assert req.style == "imds" and req.headers.get("metadata") == "true"
    assert req.query["resource"] == "https://cognitiveservices.azure.com"
    ids = {k: v for k, v in req.query.items() if k in ("client_id", "object_id", "msi_res_id")}
    assert ids == selector


# -- expiry under traffic -----------------------------------------------------------------------


def test_short_lived_token_is_refreshed_while_traffic_flows(
    tmp_path: Path, gateway_factory: type[GatewayProcess], fake: FakeProviderThread
) -> None:
    """Tokens that live 6 s, ~10 s of requests from 4 clients: none fails, each token is replaced
    before it expires, and the token endpoint never sees two fetches at once (one worker process)."""
    entra = FakeEntra(tmp_path, expires_in=6, latency=0.2).start()
    try:
        gw = gateway_factory(workers=1)
        for key in list(gw.env):
            if key.startswith(_AMBIENT_PREFIXES):
                del gw.env[key]
        gw.env.update(entra.entra_env())
        text = _manifests(
            gw.port,
            SECRET_BACKEND,  # one credential: the token endpoint's concurrency is this credential's
            [("secret", "AIBackend")],
            up=fake.port,
            tenant=TENANT,
            sp_client=SP_CLIENT,
            sp_secret=SP_SECRET,
        )
        gw.write("gw.yaml", text)
        gw.start()
        statuses: list[int] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + 10

        def client() -> None:
            with httpx.Client(timeout=15) as http:
                while time.monotonic() < stop_at:
                    resp = http.post(
                        f"{gw.url}/secret/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "tick"}]},
                    )
                    with lock:
                        statuses.append(resp.status_code)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses and set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200][:5]}"
        issued = list(entra.issued)
        assert len(issued) >= 3, f"expected refreshes during the run, got {len(issued)} token(s)"
        for older, newer in itertools.pairwise(issued):
            assert newer.issued_at < older.expires_at, f"{older.token} was replaced only after it expired"
        assert entra.max_in_flight == 1
        expiry = {i.token: i.expires_at for i in issued}
        used = set()
        for rec in fake.requests:
            token = rec.headers["authorization"].removeprefix("Bearer ")
            used.add(token)
            assert rec.time < expiry[token], f"{token} reached the provider after it expired"
        assert len(used) >= 2
        assert all(g.form.get("client_secret") == SP_SECRET for g in entra.grants)
    finally:
        entra.stop()
