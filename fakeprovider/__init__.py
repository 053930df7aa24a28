"""A protocol-faithful fake OpenAI-compatible LLM provider.

One implementation serves the quickstart demo, the integration tests and the
benchmark: it replays OpenAI's wire format (JSON, SSE, errors) deterministically,
records every request it receives, and injects faults on demand (latency,
error statuses with Retry-After, connection resets, cut streams).
"""

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
