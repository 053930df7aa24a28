"""IR -> Envoy xDS resources (pure), and the ADS server that serves them."""
