"""Names shared by the bootstrap, the generated xDS and the extproc.

One place, because Envoy silently ignores a per-route config under a filter
name that does not exist, and the extproc reads metadata under these keys.
"""

from extproc import wire

EXTPROC_CLUSTER = "llmgw_extproc"
XDS_CLUSTER = "llmgw_xds"
ROUTER_STAGE_FILTER = "llmgw.router_stage"
ATTEMPT_STAGE_FILTER = "llmgw.attempt_stage"
# Shared with the extproc: defined in its wire module (extproc never imports controlplane).
METADATA_NAMESPACE = wire.METADATA_NAMESPACE
PROVIDER_KEY = wire.PROVIDER_METADATA_KEY
STAGE_HEADER = wire.STAGE_METADATA_KEY
GATEWAY_HEADER = wire.GATEWAY_METADATA_KEY
MODEL_HEADER = wire.MODEL_HEADER

TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
