"""The rendered Envoy bootstrap keeps the workaround for Envoy's ext_proc side-stream crash.

docs/notes/envoy-extproc-segfault.md: with gRPC side-stream flow control on,
Envoy 1.39/1.40 segfault when an upstream (attempt-stage) ext_proc filter is
torn down while its gRPC stream is above its high watermark. Both ways of
running (standalone Unix sockets, Kubernetes TCP) must keep it off.
"""

from __future__ import annotations

import yaml

from controlplane import bootstrap

FLAG = "envoy.reloadable_features.grpc_side_stream_flow_control"


def _static_runtime(text: str) -> dict[str, object]:
    doc = yaml.safe_load(text)
    layers = doc["layered_runtime"]["layers"]
    static: dict[str, object] = {}
    for layer in layers:
        static.update(layer.get("static_layer", {}))
    # The admin layer stays last so /runtime_modify still works.
    assert "admin_layer" in layers[-1]
    return static


def test_side_stream_flow_control_is_off_standalone() -> None:
    text = bootstrap.render(node_id="n", admin_port=15000, xds_socket="/tmp/x.sock", extproc_sockets=["/tmp/e0"])
    assert _static_runtime(text)[FLAG] is False


def test_side_stream_flow_control_is_off_kubernetes() -> None:
    text = bootstrap.render(
        node_id="n", admin_port=15000, xds_address=("llmgw.llmgw-system", 18000), extproc_sockets=["/tmp/e0"]
    )
    assert _static_runtime(text)[FLAG] is False


def test_extproc_retries_are_not_capped_by_the_default_circuit_breaker() -> None:
    """Envoy's default max_retries (3 at a time) refused most retries when a worker died under load."""
    text = bootstrap.render(node_id="n", admin_port=15000, xds_socket="/tmp/x.sock", extproc_sockets=["/tmp/e0"])
    clusters = {c["name"]: c for c in yaml.safe_load(text)["static_resources"]["clusters"]}
    thresholds = clusters["llmgw_extproc"]["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_retries"] >= 1000
