"""Every name the control plane and the extproc must agree on, defined once.

The control plane writes these into Envoy's config (gRPC initial metadata,
metadata namespaces, cluster and route names) and the extproc reads them back
from what Envoy sends; a typo on either side fails silently (Envoy ignores
an unknown metadata key, a prefix that does not match parses as "no route").
Both sides import this module; names are built and parsed by the functions
here, never by string surgery elsewhere. extproc never imports controlplane,
so the shared names live on this side.
"""

from __future__ import annotations

# --- HTTP headers -----------------------------------------------------------------------------

# The Gateway API Inference Extension's header: the body's `model`, set before route matching.
MODEL_HEADER = "x-gateway-model-name"
# The attempt stage turns a 429 into a 503 for outlier detection and keeps the original here.
UPSTREAM_STATUS_HEADER = "x-llmgw-upstream-status"
# Envoy's router excludes the host at once when a response carries this header.
IMMEDIATE_HC_FAIL_HEADER = "x-envoy-immediate-health-check-fail"
# On an error the attempt stage answers itself (already in the client's schema): the router stage
# removes it and passes that body untranslated.
ANSWERED_HEADER = "x-llmgw-answered"
# Gateway API Inference Extension endpoint picker protocol (v1.0.0 of proposal 004, GIE v1.6.0):
# the endpoints the picker chose ("ip:port,ip:port", first preferred), as a request header and as
# dynamic metadata under `envoy.lb`; the endpoint that served, reported back to the picker in
# `envoy.lb`; the subset the picker must choose from, in `envoy.lb.subset_hint`.
DESTINATION_ENDPOINT_HEADER = "x-gateway-destination-endpoint"
DESTINATION_ENDPOINT_SERVED = "x-gateway-destination-endpoint-served"
DESTINATION_ENDPOINT_SUBSET = "x-gateway-destination-endpoint-subset"
LB_METADATA_NAMESPACE = "envoy.lb"
# The InferenceObjective a client names for its request (GIE): its priority under saturation.
OBJECTIVE_HEADER = "x-gateway-inference-objective"
SUBSET_HINT_NAMESPACE = "envoy.lb.subset_hint"
# Headers only the gateway may set: a client's copy is removed before anything reads it.
GATEWAY_ONLY_HEADERS = (MODEL_HEADER, UPSTREAM_STATUS_HEADER, DESTINATION_ENDPOINT_HEADER)

# --- ext_proc streams -------------------------------------------------------------------------

# gRPC initial metadata of each ext_proc filter: which stage it is, and for which Gateway.
STAGE_METADATA_KEY = "x-llmgw-stage"
GATEWAY_METADATA_KEY = "x-llmgw-gateway"
STAGE_ROUTER = "router"
STAGE_ATTEMPT = "attempt"

# Envoy metadata namespace: endpoint metadata (`provider`), and the dynamic metadata the
# access log reads (`%DYNAMIC_METADATA(llmgw:...)%`).
METADATA_NAMESPACE = "llmgw"
PROVIDER_METADATA_KEY = "provider"

# --- the config channel (control plane -> extproc workers) --------------------------------------

CONFIG_SERVICE = "llmgw.config.v1.ExtprocConfig"
CONFIG_WATCH_METHOD = f"/{CONFIG_SERVICE}/Watch"

# --- Envoy resource names -----------------------------------------------------------------------

_BACKEND_CLUSTER = "aibackend/"
_DIRECT_CLUSTER = "aibackend-direct/"
_ROUTE = "httproute/"
_POOL_CLUSTER = "inferencepool/"
_EPP_CLUSTER = "endpointpicker/"


def backend_cluster(backend_key: str) -> str:
    """The cluster of an AI backend `<namespace>/<name>`."""
    return _BACKEND_CLUSTER + backend_key


def direct_cluster(cluster: str) -> str:
    """The twin of a backend cluster without the attempt stage (controlplane/gatewayapi/direct.py)."""
    return cluster.replace(_BACKEND_CLUSTER, _DIRECT_CLUSTER, 1)


def backend_of_cluster(cluster: str) -> str:
    """`<namespace>/<name>` of the backend a cluster serves (the cluster itself if it is not one)."""
    for prefix in (_BACKEND_CLUSTER, _DIRECT_CLUSTER, _POOL_CLUSTER):
        if cluster.startswith(prefix):
            return cluster[len(prefix) :]
    return cluster


def pool_cluster(pool_key: str) -> str:
    """The cluster of the model-server pods of InferencePool `<namespace>/<name>`."""
    return _POOL_CLUSTER + pool_key


def epp_cluster(pool_key: str) -> str:
    """The cluster of the endpoint picker (EPP) of InferencePool `<namespace>/<name>`."""
    return _EPP_CLUSTER + pool_key


def route_name(route_key: str, *, rule: int, match: int) -> str:
    """The Envoy route of one match of one rule of HTTPRoute `<namespace>/<name>`."""
    return f"{_ROUTE}{route_key}/rule/{rule}/match/{match}"


def route_of_route_name(name: str) -> str | None:
    """`<namespace>/<name>` of the HTTPRoute an Envoy route came from, or None."""
    if not name.startswith(_ROUTE):
        return None
    parts = name[len(_ROUTE) :].split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None
