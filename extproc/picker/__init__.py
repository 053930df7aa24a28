"""llmgw's own endpoint picker: model-server load from Prometheus metrics, least-loaded picks, priority shedding.

Used in two places with one core: inside the router stage for InferencePools
without an `endpointPickerRef` (standalone, no extra hop), and as `llmgw epp`,
an endpoint picker speaking the GIE protocol (proposal 004) for any gateway.
"""
