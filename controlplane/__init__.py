"""llmgw control plane: resources -> IR -> Envoy xDS, the ADS server and the CLI supervisor."""
