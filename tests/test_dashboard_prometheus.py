"""Every panel of the shipped Grafana dashboard returns data from a real Prometheus scraping a gateway.

The gateway serves the kinds of traffic the panels are about (successes,
streams, a client error, a provider's 5xx, a failover, a cut stream); the
Debian `prometheus` binary scrapes its `:15020/metrics` every second; then
each target's PromQL (Grafana's variables substituted) must return at least
one series with a number. Panels over metrics another branch adds (cost) are
checked once the gateway exports that metric, and listed as not yet checkable
until then. Skips, saying why, where no `prometheus` binary is installed (the
test script installs Debian's package where it can).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, free_port, gateway_yaml, http_route_yaml, route_rule, wait_until
from tests.test_gateway_observability import BACKENDS

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "llmgw.json"
PROMETHEUS = shutil.which("prometheus")
# Grafana's variables, as a user looking at all gateways over the last minutes would have them.
VARIABLES = {"$gateway": ".*", "$__rate_interval": "1m", "$__range": "10m"}
# Metrics added by the governance branch (cost): their panels are checked when the gateway exports them.
LATER_METRICS = ("llmgw_gen_ai_cost_usd_total",)


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_every_panel_has_a_query_over_llmgw_metrics() -> None:
    targets = dashboard_targets()
    assert len(targets) >= 25
    for title, expr in targets:
        assert "llmgw_" in expr and "agentgateway_" not in expr, title


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    started = {name: FakeProviderThread(name=name).start() for name in ("solo", "primary", "secondary")}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1)
    routes = http_route_yaml(route_rule("/solo", "solo", rewrite=True), route_rule("/fo", "fo", rewrite=True))
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + BACKENDS.format(**{n: f.port for n, f in fakes.items()}))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture(scope="module")
def prometheus(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("no `prometheus` binary (Debian package `prometheus`; scripts/test installs it where it can)")
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: llmgw\n    static_configs: [{{targets: ['127.0.0.1:{gateway.metrics_port}']}}]\n"
    )
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), what="Prometheus scraping the gateway", timeout=60, interval=0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _up(url: str) -> bool:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2).json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return any(r["value"][1] == "1" for r in result)


def _has_data(url: str, expr: str) -> bool:
    reply = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert reply["status"] == "success", (expr, reply)
    return any(not math.isnan(float(r["value"][1])) for r in reply["data"]["result"])


def _traffic(gw: GatewayProcess, fakes: dict[str, FakeProviderThread]) -> None:
    """One round of everything the panels count."""
    solo = openai.OpenAI(base_url=gw.url + "/solo/v1", api_key="k", max_retries=0, timeout=20)
    fo = openai.OpenAI(base_url=gw.url + "/fo/v1", api_key="k", max_retries=0, timeout=20)
    for _ in range(3):
        solo.chat.completions.create(model="model-a", messages=[{"role": "user", "content": "hi"}])
        stream = solo.chat.completions.create(
            model="model-b",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert httpx.post(gw.url + "/solo/v1/chat/completions", json={"messages": []}, timeout=10).status_code == 400
    fakes["solo"].set_behaviour(error_status=500)
    with pytest.raises(openai.InternalServerError):
        solo.chat.completions.create(model="model-a", messages=[{"role": "user", "content": "fail"}])
    fakes["solo"].set_behaviour(error_status=None, cut_stream_after_chunks=2, chunks=6, error_count=1)
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        cut = solo.chat.completions.create(model="model-b", messages=[{"role": "user", "content": "c"}], stream=True)
        list(cut)
    fakes["solo"].reset_behaviour()
    fakes["primary"].set_behaviour(error_status=503)
    fo.chat.completions.create(model="model-a", messages=[{"role": "user", "content": "fail over"}])
    fakes["primary"].reset_behaviour()


def test_every_dashboard_query_returns_data(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], prometheus: str
) -> None:
    exported = gateway.metrics()
    later = [m for m in LATER_METRICS if m.removesuffix("_total") not in exported]
    checked = [(t, e) for t, e in dashboard_targets() if not any(m in e for m in later)]
    missing: list[str] = []

    def all_have_data() -> bool:
        _traffic(gateway, fakes)  # rates need increases between scrapes: traffic while Prometheus watches
        missing[:] = [f"{title}: {expr}" for title, expr in checked if not _has_data(prometheus, substitute(expr))]
        return not missing

    try:
        wait_until(all_have_data, what="data for every panel", timeout=90, interval=1.0)
    except AssertionError:
        raise AssertionError("panels without data:\n" + "\n".join(missing)) from None
    skipped = [t for t, e in dashboard_targets() if any(m in e for m in later)]
    assert {t for t in skipped} <= {
        "Spend (USD/h) by model",
        "Spend (USD/h) by route",
        "Spend by team (USD, selected range)",
    }


def test_compose_provisions_the_dashboard() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in compose
    provider = (REPO / "deploy/grafana/provisioning/dashboards/llmgw.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    assert Path(DASHBOARD).is_file()
