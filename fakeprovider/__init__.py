"""A protocol-faithful fake OpenAI-compatible LLM provider.

One implementation serves the quickstart demo, the integration tests and the
benchmark: it replays OpenAI's wire format (JSON, SSE, errors) deterministically,
records every request it receives, and injects faults on demand (latency,
error statuses with Retry-After, connection resets, cut streams).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakeprovider.app import FakeProvider, start_fake_provider
    from fakeprovider.behaviour import Behaviour, BehaviourError
    from fakeprovider.records import RecordedRequest
    from fakeprovider.thread import FakeProviderThread

__all__ = [
    "Behaviour",
    "BehaviourError",
    "FakeProvider",
    "FakeProviderThread",
    "RecordedRequest",
    "start_fake_provider",
]
# Imported on first use (PEP 562): `llmgw` registers the fake-provider subcommand's flags
# through `fakeprovider.cli`, and the supervisor of `llmgw run` should not load aiohttp's
# server and the fake's app for that.
_WHERE = {
    "Behaviour": "fakeprovider.behaviour",
    "BehaviourError": "fakeprovider.behaviour",
    "FakeProvider": "fakeprovider.app",
    "FakeProviderThread": "fakeprovider.thread",
    "RecordedRequest": "fakeprovider.records",
    "start_fake_provider": "fakeprovider.app",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'fakeprovider' has no attribute {name!r}")
