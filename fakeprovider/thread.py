"""Run a fake provider on a background thread, for synchronous pytest code.

Tests of the gateway are mostly synchronous (subprocesses, httpx, the official
SDKs), and the repo does not rely on pytest-asyncio. This wrapper owns a
private event loop in a daemon thread; behaviour changes are applied on that
loop so they never race with a request in flight, and the request log is
locked so reading it from the test thread is safe.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from fakeprovider.app import FakeProvider, start_fake_provider
from fakeprovider.behaviour import Behaviour
from fakeprovider.records import DEFAULT_RECORD_LIMIT, RecordedRequest

_T = TypeVar("_T")
_TIMEOUT = 10.0


class FakeProviderThread:
    """`start()` / `stop()` a fake provider; also a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        behaviour: Behaviour | None = None,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "fake",
        record_limit: int = DEFAULT_RECORD_LIMIT,
    ) -> None:
        self._options: dict[str, Any] = {
            "host": host,
            "port": port,
            "behaviour": behaviour,
            "ssl_context": ssl_context,
            "name": name,
            "record_limit": record_limit,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._provider: FakeProvider | None = None

    def start(self) -> FakeProviderThread:
        """Bind and serve; returns once listening. Raises OSError if the bind fails."""
        if self._thread is not None:
            raise RuntimeError("fake provider already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._provider = loop.run_until_complete(start_fake_provider(**self._options))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        name = f"fake-provider-{self._options['name']}"
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._loop = loop
        self._thread.start()
        if not ready.wait(_TIMEOUT):
            raise TimeoutError("fake provider did not start")
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the server and join the thread; safe to call twice."""
        if self._thread is None or self._loop is None:
            return
        provider = self._provider
        if provider is not None:
            self._call(provider.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_TIMEOUT)
        self._thread = self._loop = None

    def __enter__(self) -> FakeProviderThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def provider(self) -> FakeProvider:
        if self._provider is None:
            raise RuntimeError("fake provider not started")
        return self._provider

    @property
    def port(self) -> int:
        return self.provider.port

    @property
    def url(self) -> str:
        """e.g. `http://127.0.0.1:43125` (no path; append `/v1` for SDKs)."""
        return self.provider.url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the recorded requests, oldest first."""
        return self.provider.requests

    def clear(self) -> None:
        """Forget recorded requests."""
        self.provider.clear_requests()

    @property
    def behaviour(self) -> Behaviour:
        """A copy of the current shared behaviour."""
        return self._call(_copy_behaviour(self.provider))

    def set_behaviour(self, **fields: Any) -> Behaviour:
        """Merge `fields` into the shared behaviour (None resets a field); returns it.

        Raises BehaviourError for unknown fields or bad values.
        """
        return self._call(_merge_behaviour(self.provider, fields))

    def reset_behaviour(self) -> Behaviour:
        """Back to the behaviour given at construction."""
        return self._call(_reset_behaviour(self.provider))

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("fake provider not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)


async def _copy_behaviour(provider: FakeProvider) -> Behaviour:
    return provider.behaviour.merged({})


async def _merge_behaviour(provider: FakeProvider, fields: dict[str, Any]) -> Behaviour:
    provider.behaviour = provider.behaviour.merged(fields)
    return provider.behaviour.merged({})


async def _reset_behaviour(provider: FakeProvider) -> Behaviour:
    provider.reset_behaviour()
    return provider.behaviour.merged({})
