"""llmgw External Processor: the Python half of the data plane (Envoy ext_proc)."""
