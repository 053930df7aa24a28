"""Auth kind `azure` (extproc.credentials.azure) with the real azure-identity against local fakes.

The Entra ID token endpoint is HTTPS with a test CA (tests/fakes/entra.py), trusted through
`REQUESTS_CA_BUNDLE` and reached through `AZURE_AUTHORITY_HOST`, exactly as a gateway pod
would be configured for a private authority; managed identity goes to the fake IMDS
(`AZURE_POD_IDENTITY_AUTHORITY_HOST`) or App Service (`IDENTITY_ENDPOINT`) endpoint. Nothing
in azure-identity or MSAL is mocked. Background refreshes are awaited with bounded waits;
no test asserts on timing.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc import credentials
from extproc.contract import AuthConfig, ProviderConfig
from extproc.credentials import CredentialError, SignedRequest, auth_headers, token_cache
from extproc.credentials import azure as credentials_azure
from extproc.credentials.token_cache import AccessToken, TokenSource, refresh_delay
from tests.fakes.entra import CLIENT_ASSERTION_TYPE, IDENTITY_HEADER, FakeEntra
from tests.harness import wait_until

REQUEST = SignedRequest(method="POST", authority="my-res.openai.azure.com", path="/openai/v1/x", headers={}, body=b"")
COGNITIVE = "https://cognitiveservices.azure.com/.default"
FOUNDRY = "https://ai.azure.com/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "1234abcd-0000-4000-8000-000000000001"
SECRET = "sp-client-secret-VALUE-42"
_AMBIENT_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ambient Azure configuration leaks in; every test starts with no cached credential."""
    for key in list(os.environ):
        if key.startswith(_AMBIENT_PREFIXES):
            monkeypatch.delenv(key)
    credentials_azure.reset()
    yield
    credentials_azure.reset()


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[FakeEntra]:
    fake = FakeEntra(tmp_path).start()
    yield fake
    fake.stop()


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def _provider(
    params: dict[str, str] | None = None,
    *,
    kind: str = "azureopenai",
    settings: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    source: str = "secret default/entra-sp",
    pid: str = "default/aoai/azureopenai",
) -> ProviderConfig:
    auth = AuthConfig(header="", prefix="", kind="azure", source=source, params=params or {})
    if settings is None:
        settings = {"endpoint": "my-res.openai.azure.com"}
    return ProviderConfig(id=pid, backend=pid.rsplit("/", 1)[0], kind=kind, host=host, auth=auth, settings=settings)


def _secret_params(secret: str = SECRET) -> dict[str, str]:
    return {"mode": "client_secret", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": secret}


def _call_bounded(fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Run fn in a thread; fail (instead of hanging the suite) if it does not return in time."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"call did not return within {timeout}s"
    return result[0]


# -- Entra ID flows (HTTPS token endpoint) --------------------------------------------------


def test_client_secret_flow_and_cache(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    provider = _provider(_secret_params())
    for _ in range(3):
        assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}
    [grant] = entra.grants
    assert grant.tenant == TENANT
    assert grant.form["grant_type"] == "client_credentials"
    assert grant.form["client_id"] == CLIENT
    assert grant.form["client_secret"] == SECRET
    assert grant.scope == COGNITIVE
    assert "client_assertion" not in grant.form


def test_workload_identity_presents_the_federated_token(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    federated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bGxtZ3cifQ.c2lnbmF0dXJl"
    _env(monkeypatch, entra.workload_env(client_id=CLIENT, tenant_id=TENANT, token=federated))
    foundry = _provider(
        {"mode": "workload_identity"}, kind="azure", settings={"resourceName": "proj-res", "resourceType": "Foundry"}
    )
    assert auth_headers(foundry, REQUEST) == {"authorization": "Bearer entra-at-1"}
    [grant] = entra.grants
    assert grant.tenant == TENANT and grant.form["client_id"] == CLIENT
    assert grant.form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert grant.form["client_assertion"] == federated
    assert "client_secret" not in grant.form
    assert grant.scope == FOUNDRY


def test_default_chain_picks_workload_identity(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.workload_env(client_id=CLIENT, tenant_id=TENANT, token="federated-token-1"))
    ambient = _provider({}, source="ambient azure credentials")  # what an azure provider with no auth gets
    assert auth_headers(ambient, REQUEST) == {"authorization": "Bearer entra-at-1"}
    [grant] = entra.grants
    assert grant.form["client_assertion"] == "federated-token-1"


def test_default_chain_picks_environment_client_secret(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        {**entra.entra_env(), "AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": SECRET},
    )
    assert auth_headers(_provider({"mode": "default"}), REQUEST) == {"authorization": "Bearer entra-at-1"}
    [grant] = entra.grants
    assert grant.form["client_secret"] == SECRET and grant.tenant == TENANT


# -- managed identity -----------------------------------------------------------------------

UAMI = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"
IDS = [
    ({}, {}),
    ({"client_id": "mi-client-1"}, {"client_id": "mi-client-1"}),
    ({"object_id": "mi-object-1"}, {"object_id": "mi-object-1"}),
    ({"resource_id": UAMI}, {"msi_res_id": UAMI}),
]


@pytest.mark.parametrize(("params", "expected"), IDS, ids=["system", "client_id", "object_id", "resource_id"])
def test_managed_identity_imds(
    entra: FakeEntra, monkeypatch: pytest.MonkeyPatch, params: dict[str, str], expected: dict[str, str]
) -> None:
    _env(monkeypatch, entra.imds_env())
    provider = _provider({"mode": "managed_identity", **params})
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}
    [req] = entra.mi_requests
    assert req.style == "imds" and req.headers["metadata"] == "true"
    assert req.query["resource"] == "https://cognitiveservices.azure.com"
    ids = {k: v for k, v in req.query.items() if k in ("client_id", "object_id", "msi_res_id", "mi_res_id")}
    assert ids == expected


@pytest.mark.parametrize(("params", "expected"), IDS, ids=["system", "client_id", "object_id", "resource_id"])
def test_managed_identity_app_service(
    entra: FakeEntra, monkeypatch: pytest.MonkeyPatch, params: dict[str, str], expected: dict[str, str]
) -> None:
    _env(monkeypatch, entra.app_service_env())
    provider = _provider(
        {"mode": "managed_identity", **params}, kind="azure", settings={"resourceName": "f", "resourceType": "Foundry"}
    )
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}
    [req] = entra.mi_requests
    assert req.style == "app_service" and req.headers["x-identity-header"] == IDENTITY_HEADER
    assert req.query["resource"] == "https://ai.azure.com"
    if "msi_res_id" in expected:  # App Service spells the resource ID selector mi_res_id
        expected = {"mi_res_id": expected["msi_res_id"]}
    ids = {k: v for k, v in req.query.items() if k in ("client_id", "object_id", "msi_res_id", "mi_res_id")}
    assert ids == expected


# -- scope ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "host", "settings", "scope"),
    [
        ("azureopenai", "my-res.openai.azure.com", {"endpoint": "my-res.openai.azure.com"}, COGNITIVE),
        ("azureopenai", "127.0.0.1", {"endpoint": "https://my-proj.services.ai.azure.com/"}, FOUNDRY),
        ("azureopenai", "my-proj.services.ai.azure.com", {"endpoint": "my-proj.services.ai.azure.com"}, FOUNDRY),
        ("azure", "my-res.openai.azure.com", {"resourceName": "my-res", "resourceType": "OpenAI"}, COGNITIVE),
        ("azure", "10.0.0.5", {"resourceName": "my-res", "resourceType": "Foundry"}, FOUNDRY),
        ("azure", "MY-RES.SERVICES.AI.AZURE.COM.", {}, FOUNDRY),
        ("azureopenai", "my-res.cognitiveservices.azure.com", {"endpoint": "x.cognitiveservices.azure.com"}, COGNITIVE),
    ],
)
def test_scope_by_host(kind: str, host: str, settings: dict[str, str], scope: str) -> None:
    assert credentials_azure.scope_for(_provider({}, kind=kind, host=host, settings=settings)) == scope


def test_one_credential_two_scopes_are_two_tokens(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    openai_res = _provider(_secret_params(), pid="default/a/p")
    foundry = _provider(_secret_params(), pid="default/b/p", settings={"endpoint": "x.services.ai.azure.com"})
    assert auth_headers(openai_res, REQUEST) != auth_headers(foundry, REQUEST)
    assert sorted(g.scope for g in entra.grants) == sorted([COGNITIVE, FOUNDRY])


# -- sharing and caching --------------------------------------------------------------------


def test_concurrent_first_requests_share_one_fetch(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    entra.latency = 0.5  # keep the fetch in flight while every caller arrives
    providers = [_provider(_secret_params(), pid=f"default/b{i % 3}/p") for i in range(12)]
    barrier = threading.Barrier(len(providers))
    results: list[object] = [None] * len(providers)

    def call(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = auth_headers(providers[i], REQUEST)
        except CredentialError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(providers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [{"authorization": "Bearer entra-at-1"}] * len(providers)
    assert len(entra.grants) == 1 and entra.max_in_flight == 1
    assert len(credentials_azure._sources) == 1  # three backends, one credential


def test_prefetch_fetches_before_the_first_request(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    provider = _provider(_secret_params())
    credentials.prefetch([provider, _provider(None, source="")])  # returns at once; the second has no mode
    wait_until(lambda: len(entra.issued) == 1, timeout=20, what="the prefetched token")
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}
    assert len(entra.grants) == 1


def test_rotated_secret_is_a_new_credential(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    assert auth_headers(_provider(_secret_params("old-secret-1")), REQUEST)["authorization"] == "Bearer entra-at-1"
    assert auth_headers(_provider(_secret_params("new-secret-2")), REQUEST)["authorization"] == "Bearer entra-at-2"
    assert [g.form["client_secret"] for g in entra.grants] == ["old-secret-1", "new-secret-2"]


def test_short_lived_token_is_refreshed_before_expiry(entra: FakeEntra, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, entra.entra_env())
    entra.expires_in = 3
    provider = _provider(_secret_params())
    seen = {auth_headers(provider, REQUEST)["authorization"]}
    for count in (2, 3):  # each background refresh, and a request right as it is minted: never an error
        entra.wait_issued(count)
        seen.add(auth_headers(provider, REQUEST)["authorization"])
    assert len(entra.issued) >= 3, "no background refreshes"
    for older, newer in itertools.pairwise(entra.issued):
        assert newer.issued_at < older.expires_at, "a token was replaced only after it expired"
    assert len(seen) >= 2 and entra.max_in_flight == 1


# -- failures -------------------------------------------------------------------------------


def test_failed_refresh_keeps_the_valid_token_then_fails_clearly(
    entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_cache, "MAX_BACKOFF", 1.0)
    _env(monkeypatch, entra.entra_env())
    entra.expires_in = 9  # refreshed after about half its lifetime
    provider = _provider(_secret_params())
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}
    entra.fail = (401, "invalid_client", "AADSTS7000222: The provided client secret keys for app are expired.")
    wait_until(lambda: entra.failures >= 1, timeout=20, what="a failed background refresh")
    assert auth_headers(provider, REQUEST) == {"authorization": "Bearer entra-at-1"}  # still valid: kept

    def expired_error() -> str | None:
        try:
            auth_headers(provider, REQUEST)
        except CredentialError as exc:
            return str(exc)
        return None

    message = wait_until(expired_error, timeout=20, what="the kept token to expire")
    assert message.startswith(
        f"Azure client secret (secret default/entra-sp, tenant {TENANT[:8]}…, client {CLIENT[:8]}…)"
    )
    assert "AADSTS7000222" in message and "(provider default/aoai/azureopenai)" in message
    assert SECRET not in message
    entra.fail = None
    wait_until(
        lambda: expired_error() is None and auth_headers(provider, REQUEST)["authorization"] != "Bearer entra-at-1",
        timeout=20,
        what="recovery",
    )


def test_rejected_secret_error_names_the_credential_not_the_secret(
    entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, entra.entra_env())
    entra.reject_secrets.add(SECRET)  # the fake echoes the rejected secret in its error description
    provider = _provider(_secret_params())
    with pytest.raises(CredentialError) as first:
        auth_headers(provider, REQUEST)
    text = str(first.value)
    assert "Azure client secret (secret default/entra-sp" in text and "AADSTS7000215" in text
    assert SECRET not in text and "***" in text
    source = credentials_azure.source_for(provider)
    attempts = source.failures
    with pytest.raises(CredentialError) as second:  # fails at once from the recorded failure
        auth_headers(provider, REQUEST)
    assert str(second.value) == text and source.failures == attempts


def test_default_chain_with_no_source_fails_fast_and_clearly() -> None:
    provider = _provider({}, source="ambient azure credentials")
    first = _call_bounded(lambda: auth_headers(provider, REQUEST))
    assert isinstance(first, CredentialError)
    text = str(first)
    assert text.startswith("Azure default credential chain (environment, workload identity, managed identity) failed")
    for name in ("EnvironmentCredential", "WorkloadIdentityCredential", "ManagedIdentityCredential"):
        assert name in text
    assert "aka.ms" not in text
    source = credentials_azure.source_for(provider)
    attempts = source.failures
    second = _call_bounded(lambda: auth_headers(provider, REQUEST), timeout=5)
    assert isinstance(second, CredentialError) and source.failures == attempts  # no fetch on the request path


def test_workload_identity_without_its_environment() -> None:
    with pytest.raises(CredentialError) as err:
        auth_headers(_provider({"mode": "workload_identity"}), REQUEST)
    text = str(err.value)
    assert text.startswith("Azure workload identity failed: not configured")
    assert "AZURE_CLIENT_ID" in text and "AZURE_FEDERATED_TOKEN_FILE" in text


def test_incomplete_secret_and_unknown_mode() -> None:
    with pytest.raises(CredentialError, match=r"is incomplete: no clientSecret"):
        auth_headers(_provider({"mode": "client_secret", "tenant_id": TENANT, "client_id": CLIENT}), REQUEST)
    with pytest.raises(CredentialError, match="unknown Azure credential mode 'certificate'"):
        auth_headers(_provider({"mode": "certificate"}), REQUEST)


def test_describe_scrubs_secrets_jwts_and_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "app-service-identity-header")
    exc = RuntimeError(
        "AADSTS7000215: bad secret s3cret-value-1\n header app-service-identity-header "
        "assertion eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"
        "Visit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot to troubleshoot this issue."
    )
    text = credentials_azure.describe(exc, ("s3cret-value-1",))
    assert text == "AADSTS7000215: bad secret *** header *** assertion ***"


# -- the generic token cache ----------------------------------------------------------------


def test_refresh_delay() -> None:
    hour = AccessToken("t", expires_at=3600.0)
    assert refresh_delay(hour, fetched_at=0.0, now=0.0) == pytest.approx(2400.0)  # a third of the lifetime left
    day = AccessToken("t", expires_at=86400.0, refresh_at=43200.0)
    assert refresh_delay(day, fetched_at=0.0, now=0.0) == pytest.approx(43200.0)  # the server's hint wins
    ten_min = AccessToken("t", expires_at=600.0)
    assert refresh_delay(ten_min, fetched_at=0.0, now=0.0) == pytest.approx(300.0)  # five minutes before expiry
    short = AccessToken("t", expires_at=6.0)
    assert refresh_delay(short, fetched_at=0.0, now=0.0) == pytest.approx(3.0)  # half of a short lifetime
    assert refresh_delay(short, fetched_at=0.0, now=10.0) == token_cache.MIN_DELAY


def test_token_source_first_failure_then_fail_fast_and_retry() -> None:
    calls: list[float] = []
    ok = threading.Event()

    def fetch() -> AccessToken:
        calls.append(time.time())
        if not ok.is_set():
            raise RuntimeError("endpoint down")
        return AccessToken("tok", expires_at=time.time() + 3600)

    source = TokenSource(name="test credential", fetch=fetch)
    try:
        with pytest.raises(CredentialError, match=r"^test credential failed: endpoint down$"):
            source.token()
        n = len(calls)
        with pytest.raises(CredentialError):
            source.token()
        assert len(calls) == n  # the request did not fetch
        ok.set()
        assert wait_until(lambda: _try(source), timeout=20, what="the retry") == "tok"
    finally:
        source.stop()


def test_token_source_slow_first_fetch_is_bounded() -> None:
    release = threading.Event()

    def fetch() -> AccessToken:
        release.wait(30)
        return AccessToken("late", expires_at=time.time() + 3600)

    source = TokenSource(name="slow credential", fetch=fetch, first_fetch_timeout=0.2)
    try:
        with pytest.raises(CredentialError, match=r"no token within 0.2s \(still trying\)"):
            source.token()
        with pytest.raises(CredentialError, match="still trying"):  # later requests do not queue
            source.token(timeout=30)
        release.set()
        assert wait_until(lambda: _try(source), timeout=10, what="the late token") == "late"
    finally:
        release.set()
        source.stop()


def test_token_source_stops_when_idle_and_restarts_on_use() -> None:
    fetched: list[str] = []

    def fetch() -> AccessToken:
        fetched.append("x")
        return AccessToken(f"tok-{len(fetched)}", expires_at=time.time() + 2)

    source = TokenSource(name="idle credential", fetch=fetch, idle_timeout=0.1)
    try:
        assert source.token() == "tok-1"
        wait_until(lambda: not source.running, timeout=10, what="the idle thread to stop")
        count = len(fetched)
        assert wait_until(lambda: _try(source), timeout=10, what="a token after restart")
        assert len(fetched) > count or source.running
    finally:
        source.stop()


def _try(source: TokenSource) -> str | None:
    try:
        return source.token(timeout=1)
    except CredentialError:
        return None
