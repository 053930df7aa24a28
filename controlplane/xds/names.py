"""Names shared by the bootstrap, the generated xDS and the extproc.

One place, because Envoy silently ignores a per-route config under a filter
name that does not exist, and the extproc reads metadata under these keys.
"""

EXTPROC_CLUSTER = "llmgw_extproc"
XDS_CLUSTER = "llmgw_xds"
ROUTER_STAGE_FILTER = "llmgw.router_stage"
ATTEMPT_STAGE_FILTER = "llmgw.attempt_stage"
METADATA_NAMESPACE = "llmgw"
STAGE_HEADER = "x-llmgw-stage"
GATEWAY_HEADER = "x-llmgw-gateway"
MODEL_HEADER = "x-gateway-model-name"

TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
