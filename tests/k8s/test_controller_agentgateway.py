"""The controller with agentgateway's kinds, against the in-process API server: AgentgatewayBackend (AI and
static) is watched, translated and given status; AgentgatewayParameters shapes the provisioned pods (the AKS
tutorial's workload-identity label), its unsupported fields are reported, and a missing one is InvalidParameters.
Service backendRefs resolve against the Services the controller watches (BackendNotFound until one exists)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from controlplane.xds import names
from tests.harness import wait_until
from tests.k8s import manifests as m
from tests.k8s import test_controller as base
from tests.k8s.apiserver import ApiServer
from tests.k8s.test_controller import Running, apply_all, status_of

run_controller = base.run_controller  # the fixture: a Controller on its own loop, as `llmgw controller` runs it

AGW = "agentgateway.dev/v1alpha1"


def agw_backend(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": AGW,
        "kind": "AgentgatewayBackend",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def route_to(*backends: tuple[str, str]) -> dict[str, Any]:
    obj = m.route()
    obj["spec"]["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "backendRefs": [{"group": "agentgateway.dev", "kind": "AgentgatewayBackend", "name": name}],
        }
        for name, prefix in backends
    ]
    return obj


PARAMS = {
    "apiVersion": AGW,
    "kind": "AgentgatewayParameters",
    "metadata": {"name": "agentgateway-params", "namespace": "default"},
    "spec": {
        "deployment": {
            "spec": {"template": {"metadata": {"labels": {"azure.workload.identity/use": "true"}}}},
        },
        "service": {"metadata": {"annotations": {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}}},
        "logging": {"level": "debug"},
    },
}
PARAMS_REF = {
    "parametersRef": {"group": "agentgateway.dev", "kind": "AgentgatewayParameters", "name": "agentgateway-params"}
}


def test_agentgateway_backends_are_served_with_status(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    ai = agw_backend(
        "openai",
        {
            "ai": {"provider": {"openai": {"model": "gpt-4o-mini"}}},
            "policies": {"auth": {"secretRef": {"name": "openai-key"}}},
        },
    )
    static = agw_backend(
        "models",
        {
            "static": {"host": "api.openai.com", "port": 443},
            "policies": {"tls": {}, "auth": {"secretRef": {"name": "openai-key"}}},
        },
    )
    apply_all(
        apiserver,
        [
            m.gatewayclass(),
            m.gateway(),
            route_to(("openai", "/v1/chat"), ("models", "/v1/models")),
            ai,
            static,
            m.secret(),
        ],
    )
    ctl = run_controller()
    for name in ("openai", "models"):
        wait_until(
            lambda name=name: status_of(apiserver, "AgentgatewayBackend", name, "Programmed") == ("True", "Programmed"),
            f"AgentgatewayBackend {name} programmed",
        )
    snap = ctl.controller.ads.snapshot("default/llmgw")
    assert snap is not None
    clusters = set(snap.types[names.TYPE_CLUSTER].by_name)
    assert {"aibackend/default/openai", "backend/default/models"} <= clusters
    secrets = snap.types[names.TYPE_SECRET].by_name
    assert set(secrets) == {"llmgw-credential/default/models"}  # the static backend's key, for Envoy's SDS


def test_agentgateway_parameters_shape_the_pods(apiserver: ApiServer, run_controller: Callable[..., Running]) -> None:
    apply_all(
        apiserver,
        [PARAMS, m.gatewayclass(), m.gateway(infrastructure=PARAMS_REF), m.route(), m.aibackend(), m.secret()],
    )
    ctl = run_controller()

    def pod_labels() -> dict[str, str]:
        deployment = apiserver.get("Deployment", "llmgw") or {}
        return deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})

    wait_until(lambda: pod_labels().get("azure.workload.identity/use") == "true", "workload identity pod label")
    assert pod_labels()["gateway.networking.k8s.io/gateway-name"] == "llmgw"  # ours kept
    service = apiserver.get("Service", "llmgw")
    assert service is not None
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"
    wait_until(lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("True", "Accepted"), "accepted")
    plan = ctl.controller.plan
    assert plan is not None
    assert [(p.obj, p.field, p.reason) for p in plan.problems if "Parameters" in p.obj] == [
        ("AgentgatewayParameters default/agentgateway-params", "spec.logging", "Unsupported")
    ]
    apiserver.remove("AgentgatewayParameters", "agentgateway-params")
    wait_until(
        lambda: status_of(apiserver, "Gateway", "llmgw", "Accepted") == ("False", "InvalidParameters"), "invalid"
    )


def test_service_refs_resolve_against_the_watched_services(
    apiserver: ApiServer, run_controller: Callable[..., Running]
) -> None:
    route = m.route()
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "models", "port": 8000}]
    apply_all(apiserver, [m.gatewayclass(), m.gateway(), route])
    ctl = run_controller()
    wait_until(
        lambda: (
            status_of(apiserver, "HTTPRoute", "openai", "ResolvedRefs", "parents", 0) == ("False", "BackendNotFound")
        ),
        "a Service that does not exist",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "models", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "models.example.com"},
    }
    apiserver.apply(service)
    wait_until(
        lambda: status_of(apiserver, "HTTPRoute", "openai", "ResolvedRefs", "parents", 0) == ("True", "ResolvedRefs"),
        "the Service, once it exists",
    )

    def cluster_host() -> str | None:
        snap = ctl.controller.ads.snapshot("default/llmgw")
        packed = snap.types[names.TYPE_CLUSTER].by_name.get("service/default/models/8000") if snap else None
        if packed is None:
            return None
        cluster = cluster_pb2.Cluster()
        packed.Unpack(cluster)
        return cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address

    wait_until(lambda: cluster_host() == "models.example.com", "the ExternalName as the cluster's host")
