"""AgentgatewayParameters overlays on the provisioned objects: strategic-merge style, and every other field reported."""

from __future__ import annotations

from controlplane.kubernetes import agw_parameters, provision
from controlplane.resources import Resource


def _resource(spec: dict) -> Resource:
    body = {"apiVersion": "agentgateway.dev/v1alpha1", "kind": "AgentgatewayParameters", "spec": spec}
    return Resource("agentgateway.dev/v1alpha1", "AgentgatewayParameters", "p", "ns", body, file="p.yaml")


def test_named_lists_merge_by_name_and_null_deletes() -> None:
    base = {"containers": [{"name": "envoy", "image": "a", "env": [{"name": "X", "value": "1"}]}], "drop": 1}
    patch = {"containers": [{"name": "envoy", "env": [{"name": "Y", "value": "2"}]}, {"name": "side"}], "drop": None}
    assert agw_parameters.merge(base, patch) == {
        "containers": [
            {"name": "envoy", "image": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "side"},
        ]
    }
    assert agw_parameters.merge({"args": ["a", "b"]}, {"args": ["c"]}) == {"args": ["c"]}  # plain lists: replaced


def test_overlays_patch_the_deployment_and_rehash() -> None:
    gw = Resource(
        "gateway.networking.k8s.io/v1", "Gateway", "gw", "ns", {"metadata": {"uid": "u"}, "spec": {"listeners": []}}
    )
    settings = provision.Settings(image="llmgw:test", xds_host="x")
    objects = provision.desired_objects(gw, spec={}, settings=settings)
    overlay = {"deployment": {"metadata": {"labels": {"team": "a"}}, "spec": {"replicas": 3}}}
    patched = agw_parameters.apply_overlays(objects, [overlay])
    deployment = next(o for o in patched if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3 and deployment["metadata"]["labels"]["team"] == "a"
    before = next(o for o in objects if o["kind"] == "Deployment")
    assert provision.needs_update(before, deployment)  # a new hash: the controller updates the live object


def test_every_field_but_the_overlays_is_reported() -> None:
    spec = {
        "deployment": {"metadata": {"labels": {}, "finalizers": []}, "spec": {}, "extra": 1},
        "daemonSet": {},
        "image": {"tag": "v1"},
        "env": [],
        "resources": {},
        "rawConfig": {},
    }
    got = [(p.field, p.reason) for p in agw_parameters.problems(_resource(spec))]
    assert got == [
        ("spec.deployment.metadata.finalizers", "Unsupported"),
        ("spec.deployment.extra", "Unsupported"),
        ("spec.daemonSet", "Unsupported"),
        ("spec.image", "Unsupported"),
        ("spec.env", "Unsupported"),
        ("spec.resources", "Unsupported"),
        ("spec.rawConfig", "Unsupported"),
    ]
