"""The Kubernetes provider: watch the API server, feed the pure translation, write status, provision data planes.

The second implementation of the provider seam (the first is the file provider,
`controlplane.compile`): both produce `controlplane.resources.Resource` objects and
hand them to `controlplane.gatewayapi.translate`. Status computation
(`status.py`) and data-plane provisioning (`provision.py`) are pure functions;
`client.py`, `informer.py`, `leader.py` and `controller.py` are the side effects.
"""
