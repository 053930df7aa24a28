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
# On the attempt stage's own rejection by a prompt guard: its guard decisions (`kind:action,...`),
# which the router stage removes and writes to the access log.
GUARD_HEADER = "x-llmgw-guard"
# The route authentications (their ids: API key and/or JWT) the caller satisfied, set by the router stage on the request
# headers; a route that requires another one answers 401 when model routing moves a request to it
# (controlplane/xds/route.py, authentication guard). Removed before the request goes upstream.
AUTHN_HEADER = "x-llmgw-authn"
# Headers only the gateway may set: a client's copy is removed before anything reads it.
GATEWAY_ONLY_HEADERS = (MODEL_HEADER, UPSTREAM_STATUS_HEADER, DESTINATION_ENDPOINT_HEADER, AUTHN_HEADER)

# --- ext_proc streams -------------------------------------------------------------------------

# gRPC initial metadata of each ext_proc filter: which stage it is, and for which Gateway.
STAGE_METADATA_KEY = "x-llmgw-stage"
GATEWAY_METADATA_KEY = "x-llmgw-gateway"
STAGE_ROUTER = "router"
STAGE_ATTEMPT = "attempt"

# Envoy metadata namespace: endpoint metadata (`provider`), and the dynamic metadata the
# access log reads (`%DYNAMIC_METADATA(llmgw:...)%`).
METADATA_NAMESPACE = "llmgw"
# Envoy's jwt_authn filter writes each valid token's payload here, keyed by its provider name
# (controlplane/xds/jwt_authn.py); the router stage's ext_proc filter forwards the namespace.
JWT_METADATA_NAMESPACE = "envoy.filters.http.jwt_authn"
PROVIDER_METADATA_KEY = "provider"
# Access-log fields of the prompt guards' decisions (`kind:action,...`; never any text).
GUARD_REQUEST_METADATA_KEY = "guardrail.request"
GUARD_RESPONSE_METADATA_KEY = "guardrail.response"
# Dynamic metadata: a response's tokens less the 1 hit its global token limits took at the start;
# Envoy's ratelimit filter sends it at stream end (controlplane/xds/ratelimit.py).
RLS_TOKEN_HITS_KEY = "rls_token_hits"

# Set to "1" in the workers' environment when traces may carry prompts and completions
# (`llmgw run --trace-content`): the router stage then writes them as dynamic metadata.
TRACE_CONTENT_ENV = "LLMGW_TRACE_CONTENT"
# Dynamic metadata keys of that content (OpenTelemetry GenAI attribute names).
INPUT_MESSAGES_KEY = "gen_ai.input.messages"
OUTPUT_MESSAGES_KEY = "gen_ai.output.messages"

# --- the config channel (control plane -> extproc workers) --------------------------------------

CONFIG_SERVICE = "llmgw.config.v1.ExtprocConfig"
CONFIG_WATCH_METHOD = f"/{CONFIG_SERVICE}/Watch"
# A model's catalog price, asked by a worker once per (provider kind, model) (extproc/prices.py).
CONFIG_PRICE_METHOD = f"/{CONFIG_SERVICE}/Price"
# Mutual TLS on the config channel (controlplane/kubernetes/xds_tls.py writes them, configclient.py reads
# them): the file names in the mounted Secret.
CONFIG_TLS_CA_FILE = "ca.crt"
CONFIG_TLS_CERT_FILE = "tls.crt"
CONFIG_TLS_KEY_FILE = "tls.key"

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


_AUTHN = "/authn/"
AUTHN_GUARD_SUFFIX = "/unauthenticated"


def authn_route_name(name: str, policy_id: str) -> str:
    """The Envoy route name of a route whose authentication is `policy_id` (the extproc reads it back)."""
    return f"{name}{_AUTHN}{policy_id}"


def authn_of_route_name(name: str) -> str | None:
    """The authentication id a route name carries (`authn_route_name`), or None."""
    at = name.rfind(_AUTHN)
    if at < 0:
        return None
    return name[at + len(_AUTHN) :].split("/", 1)[0] or None


def rule_of_route_name(name: str) -> int | None:
    """The rule index of an Envoy route named by `route_name` (None if it is not one)."""
    if not name.startswith(_ROUTE):
        return None
    parts = name[len(_ROUTE) :].split("/")
    return int(parts[3]) if len(parts) >= 4 and parts[2] == "rule" and parts[3].isdigit() else None


def route_of_route_name(name: str) -> str | None:
    """`<namespace>/<name>` of the HTTPRoute an Envoy route came from, or None."""
    if not name.startswith(_ROUTE):
        return None
    parts = name[len(_ROUTE) :].split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None
