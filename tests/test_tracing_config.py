"""Tracing settings: the options' parsing and the Envoy config they become (parsed into Envoy's protos)."""

from __future__ import annotations

import pytest

from controlplane.cli import build_parser
from controlplane.ir import ListenerIR
from controlplane.limits import Limits
from controlplane.xds.listener import listener_resource
from controlplane.xds.names import TYPE_CLUSTER, TYPE_LISTENER
from controlplane.xds.tracing import OTLP_CLUSTER, TracingSettings, collector_cluster
from controlplane.xds.translate import EnvoyResources, to_protos


def test_parse_default_and_per_gateway_sampling() -> None:
    t = TracingSettings.parse(endpoint="otel.telemetry:4317", sampling=["25", "prod/gw=1.5"])
    assert (t.collector_host, t.collector_port) == ("otel.telemetry", 4317)
    assert t.sampling_for("prod/gw") == 1.5
    assert t.sampling_for("dev/gw") == 25.0
    assert TracingSettings.parse(endpoint="[::1]:4317").collector_host == "::1"


@pytest.mark.parametrize(
    ("endpoint", "sampling", "message"),
    [
        ("otel", None, "--otlp-endpoint 'otel': expected HOST:PORT"),
        ("otel:0", None, "expected HOST:PORT"),
        ("otel:4317", ["150"], "between 0 and 100"),
        ("otel:4317", ["gw=5"], "NAMESPACE/NAME"),
        ("otel:4317", ["ns/gw=lots"], "expected [NAMESPACE/NAME=]PERCENT"),
    ],
)
def test_parse_errors_name_the_option(endpoint: str, sampling: list[str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TracingSettings.parse(endpoint=endpoint, sampling=sampling)


def test_listener_tracing_is_valid_envoy_config() -> None:
    settings = TracingSettings.parse(endpoint="127.0.0.1:4317", sampling=["10", "default/gw=50"])
    listener = ListenerIR(name="default/gw/8080", gateway="default/gw", address="0.0.0.0", port=8080, virtual_hosts=())
    res = EnvoyResources()
    res.listeners.append(listener_resource(listener, Limits(), tracing=settings))
    res.clusters.append(collector_cluster(settings))
    protos = to_protos(res)  # raises on a field Envoy does not have
    [lst] = protos[TYPE_LISTENER]
    hcm = lst.filter_chains[0].filters[0].typed_config
    assert b"envoy.tracers.opentelemetry" in hcm.value and OTLP_CLUSTER.encode() in hcm.value
    assert [c.name for c in protos[TYPE_CLUSTER]] == [OTLP_CLUSTER]
    tracing = listener_resource(listener, Limits(), tracing=settings)["filter_chains"][0]["filters"][0]["typed_config"][
        "tracing"
    ]
    assert tracing["random_sampling"] == {"value": 50.0}
    assert tracing["spawn_upstream_span"] is True
    tags = {t["tag"] for t in tracing["custom_tags"]}
    assert {"gen_ai.request.model", "gen_ai.usage.output_tokens", "error.type", "llmgw.upstream.provider"} <= tags


def test_without_an_endpoint_there_is_no_tracing() -> None:
    listener = ListenerIR(name="default/gw/8080", gateway="default/gw", address="0.0.0.0", port=8080, virtual_hosts=())
    assert "tracing" not in listener_resource(listener, Limits())["filter_chains"][0]["filters"][0]["typed_config"]


def test_cli_takes_the_options() -> None:
    args = build_parser().parse_args(["run", "-f", "x", "--otlp-endpoint", "c:4317", "--trace-sampling", "5"])
    assert args.otlp_endpoint == "c:4317" and args.trace_sampling == ["5"]


def test_content_tags_only_with_the_opt_in() -> None:
    listener = ListenerIR(name="default/gw/8080", gateway="default/gw", address="0.0.0.0", port=8080, virtual_hosts=())

    def tags(settings: TracingSettings) -> set[str]:
        hcm = listener_resource(listener, Limits(), tracing=settings)["filter_chains"][0]["filters"][0]
        return {t["tag"] for t in hcm["typed_config"]["tracing"]["custom_tags"]}

    plain = TracingSettings.parse(endpoint="c:4317")
    opted = TracingSettings.parse(endpoint="c:4317", record_content=True)
    assert "gen_ai.input.messages" not in tags(plain)
    assert {"gen_ai.input.messages", "gen_ai.output.messages"} <= tags(opted)


def test_trace_options_need_an_endpoint() -> None:
    from controlplane.cli import _tracing

    for argv in (["--trace-content"], ["--trace-sampling", "5"]):
        args = build_parser().parse_args(["run", "-f", "x", *argv])
        with pytest.raises(ValueError, match="needs --otlp-endpoint"):
            _tracing(args)
