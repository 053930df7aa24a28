"""Seed tests: agentgateway tutorials' manifests as printed, through the real gateway with the official SDKs."""
