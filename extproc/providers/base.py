"""What a provider module declares: its API per operation, its paths, its usage convention.

Provider modules stay thin (DESIGN convention 3): host and TLS are Envoy's
(cluster config), the body is the pair module's, the credential is the
credentials module's. What is left is naming the API and building the path.
"""

from __future__ import annotations

from typing import Protocol

from extproc.contract import ProviderConfig
from extproc.operations import Operation


class ProviderModule(Protocol):
    # Whether the provider's input token count already includes cached tokens.
    input_includes_cached: bool
    # The operations (extproc.operations names) this kind serves; the gateway refuses the others.
    operations: frozenset[str]

    def api(self, provider: ProviderConfig, op: Operation, model: str) -> str:
        """The provider API this request speaks upstream (selects the translation pair)."""
        ...

    def path(self, provider: ProviderConfig, op: Operation, model: str, stream: bool) -> str:
        """The upstream path (with query string) for this operation."""
        ...
