"""Failures are counted and requests are traced, through the real Envoy, extproc and control plane.

One gateway exports OpenTelemetry traces to a real OTLP/gRPC receiver started by
the test (tests/fakes/otlp.py). A client error, a provider's 5xx and a failover
must each show up in `:15020/metrics` with their `error_type`; the failover must
be one trace with two attempt spans under the server span, carrying the GenAI
attributes, continuing the client's `traceparent` and propagating it upstream.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakeprovider import FakeProviderThread
from tests.fakes.otlp import OtlpReceiver, Span
from tests.harness import GatewayProcess, gateway_yaml, http_route_yaml, route_rule, wait_until

pytestmark = pytest.mark.integration

FO = "aibackend/default/fo"  # the failover backend's cluster

BACKENDS = """---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: solo, namespace: default}}
spec:
  ai: {{provider: {{name: solo, openai: {{}}, host: 127.0.0.1, port: {solo}}}}}
  policies: {{auth: {{key: sk-solo}}}}
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: fo, namespace: default}}
spec:
  ai:
    groups:
      - providers: [{{name: primary, openai: {{}}, host: 127.0.0.1, port: {primary},
                     policies: {{auth: {{key: sk-1}}}}}}]
      - providers: [{{name: secondary, openai: {{}}, host: 127.0.0.1, port: {secondary},
                     policies: {{auth: {{key: sk-2}}}}}}]
"""


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderThread]]:
    started = {name: FakeProviderThread(name=name).start() for name in ("solo", "primary", "secondary")}
    yield started
    for fp in started.values():
        fp.stop()


@pytest.fixture(scope="module")
def gateway(otlp: OtlpReceiver, fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(workers=1, args=["--otlp-endpoint", otlp.endpoint, "--trace-sampling", "100"])
    routes = http_route_yaml(route_rule("/solo", "solo", rewrite=True), route_rule("/fo", "fo", rewrite=True))
    ports = {name: fp.port for name, fp in fakes.items()}
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + BACKENDS.format(**ports))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


@pytest.fixture(autouse=True)
def _fresh(fakes: dict[str, FakeProviderThread]) -> None:
    for fp in fakes.values():
        fp.clear()
        fp.reset_behaviour()


def _value(gw: GatewayProcess, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    total = 0.0
    for family in text_string_to_metric_families(gw.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _client(gw: GatewayProcess, prefix: str, traceparent: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + prefix + "/v1",
        api_key="client-key",
        max_retries=0,
        timeout=20,
        default_headers={"traceparent": traceparent},
    )


def _server_span(otlp: OtlpReceiver, trace_id: str) -> tuple[Span, list[Span]]:
    def ready() -> list[Span] | None:
        spans = otlp.trace(trace_id)
        return spans if any(s.kind == "SPAN_KIND_SERVER" for s in spans) else None

    spans = wait_until(ready, what=f"the server span of trace {trace_id}", timeout=30)
    [server] = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    return server, [s for s in spans if s.parent_span_id == server.span_id]


def test_a_client_error_is_counted_with_its_error_type(gateway: GatewayProcess) -> None:
    before = _value(gateway, "llmgw_requests_total", error_type="missing_model", status_class="4xx")
    reply = httpx.post(gateway.url + "/solo/v1/chat/completions", json={"messages": []}, timeout=10)
    assert reply.status_code == 400
    wait_until(
        lambda: _value(gateway, "llmgw_requests_total", error_type="missing_model", status="400") > before,
        what="the 400 counted",
    )
    # The access log line of that request says why too (the gateway's own answer carries its metadata).
    wait_until(lambda: '"error.type":"missing_model"' in gateway.log(), what="error.type in the access log")


def test_a_provider_5xx_is_counted_and_traced(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], otlp: OtlpReceiver
) -> None:
    fakes["solo"].set_behaviour(error_status=500)
    trace_id, _, traceparent = _traceparent()
    with pytest.raises(openai.InternalServerError):
        _client(gateway, "/solo", traceparent).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "fail"}]
        )
    wait_until(
        lambda: _value(gateway, "llmgw_requests_total", backend="default/solo", error_type="500", status_class="5xx"),
        what="the provider's 500 counted",
    )
    assert _value(gateway, "llmgw_gen_ai_server_request_duration_count", backend="default/solo", error_type="500")
    server, _ = _server_span(otlp, trace_id)
    assert server.attributes["error.type"] == "500"
    assert server.attributes["http.status_code"] == "500"


def test_failover_is_one_trace_with_two_attempts_and_is_counted_per_provider(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderThread], otlp: OtlpReceiver
) -> None:
    primary, secondary = fakes["primary"], fakes["secondary"]
    primary.set_behaviour(error_status=500)
    attempts_before = {
        p: _value(gateway, "llmgw_upstream_attempts_total", provider=f"default/fo/{p}")
        for p in ("primary", "secondary")
    }
    trace_id, client_span, traceparent = _traceparent()
    reply = _client(gateway, "/fo", traceparent).chat.completions.create(
        model="app-model", messages=[{"role": "user", "content": "save me"}]
    )
    assert reply.choices[0].message.content == "Hello from secondary: save me"

    # Metrics: one successful request, an attempt on each provider, the primary's attempt failed with 500.
    wait_until(
        lambda: _value(gateway, "llmgw_requests_total", backend="default/fo", status="200", error_type=""),
        what="the failed-over request counted",
    )
    for p in ("primary", "secondary"):
        assert _value(gateway, "llmgw_upstream_attempts_total", provider=f"default/fo/{p}") == attempts_before[p] + 1
    assert _value(gateway, "llmgw_upstream_attempt_errors_total", provider="default/fo/primary", error_type="500") >= 1
    assert not _value(gateway, "llmgw_upstream_attempt_errors_total", provider="default/fo/secondary")

    # The trace: the client's trace continued; one server span, two attempt spans under it.
    server, _ = _server_span(otlp, trace_id)
    assert server.parent_span_id == client_span
    assert server.service_name == "llmgw"

    def attempt_spans() -> list[Span] | None:
        spans = otlp.trace(trace_id)
        kids = [s for s in spans if s.parent_span_id == server.span_id and s.attributes.get("upstream_cluster") == FO]
        return kids if len(kids) >= 2 else None

    attempts = wait_until(attempt_spans, what="two attempt spans", timeout=30)
    assert len(attempts) == 2 and {s.kind for s in attempts} == {"SPAN_KIND_CLIENT"}
    by_provider = {s.attributes["llmgw.upstream.provider"]: s for s in attempts}
    assert by_provider["default/fo/primary"].attributes["http.status_code"] == "500"
    assert by_provider["default/fo/secondary"].attributes["http.status_code"] == "200"
    attrs = server.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "app-model"
    assert attrs["gen_ai.response.model"] == "app-model"
    assert int(attrs["gen_ai.usage.input_tokens"]) > 0 and int(attrs["gen_ai.usage.output_tokens"]) > 0
    assert attrs["llmgw.provider"] == "default/fo/secondary"
    assert attrs["gateway"] == "default/gw"
    assert "error.type" not in attrs
    # Each provider got the traceparent of its own attempt span, in the client's trace.
    for name, fp in (("primary", primary), ("secondary", secondary)):
        _, got_trace, got_parent, _ = fp.requests[0].headers["traceparent"].split("-")
        assert (got_trace, got_parent) == (trace_id, by_provider[f"default/fo/{name}"].span_id)
    # Prompts and completions are not attributes.
    assert not any("save me" in str(v) for s in otlp.trace(trace_id) for v in s.attributes.values())


def test_control_plane_health_is_exposed(gateway: GatewayProcess) -> None:
    assert _value(gateway, "llmgw_config_snapshot") >= 1
    assert _value(gateway, "llmgw_xds_connected") == 1
    for kind in ("Listener", "RouteConfiguration", "Cluster"):
        assert _value(gateway, "llmgw_xds_acked", type=kind) == 1, kind
        assert _value(gateway, "llmgw_xds_nacks_total", type=kind) == 0
    rejected = _value(gateway, "llmgw_config_rejected_total")
    gateway.write("broken.yaml", "apiVersion: llmgw.dev/v1alpha1\nkind: AIBackend\nmetadata: {name: broken}\nspec: 7\n")
    try:
        wait_until(lambda: _value(gateway, "llmgw_config_rejected_total") > rejected, what="the rejected reload")
    finally:
        (gateway.manifest_dir / "broken.yaml").unlink()


@pytest.fixture
def content_gateway(otlp: OtlpReceiver, fakes: dict[str, FakeProviderThread]) -> Iterator[GatewayProcess]:
    """A second gateway whose operator opted in to prompts and completions on spans."""
    gw = GatewayProcess(workers=1, args=["--otlp-endpoint", otlp.endpoint, "--trace-content"])
    routes = http_route_yaml(route_rule("/solo", "solo", rewrite=True), route_rule("/fo", "fo", rewrite=True))
    gw.write("gw.yaml", gateway_yaml(port=gw.port) + routes + BACKENDS.format(**{n: f.port for n, f in fakes.items()}))
    gw.start()
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def test_prompts_and_completions_are_on_spans_only_when_opted_in(
    content_gateway: GatewayProcess, otlp: OtlpReceiver
) -> None:
    trace_id, _, traceparent = _traceparent()
    reply = _client(content_gateway, "/solo", traceparent).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "the secret recipe"}]
    )
    server, _ = _server_span(otlp, trace_id)
    assert "the secret recipe" in server.attributes["gen_ai.input.messages"]
    assert reply.choices[0].message.content in server.attributes["gen_ai.output.messages"]
    assert "the secret recipe" not in content_gateway.log()  # the access log never has it
