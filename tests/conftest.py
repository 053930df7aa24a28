"""Shared fixtures: the fake provider and the real gateway, cleaned up after each test; no asyncio task leaks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakeprovider import FakeProviderThread
from tests.asyncio_leaks import LeakWatch
from tests.harness import GatewayProcess


@pytest.fixture
def fake() -> Iterator[FakeProviderThread]:
    provider = FakeProviderThread(name="fake").start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def gateway_factory() -> Iterator[type[GatewayProcess]]:
    started: list[GatewayProcess] = []

    class _Factory(GatewayProcess):
        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)  # type: ignore[arg-type]
            started.append(self)

    try:
        yield _Factory
    finally:
        errors = []
        for gw in started:
            try:
                code = gw.stop()
                if code not in (0, None):
                    errors.append(f"gateway exited with {code}:\n{gw.log()[-3000:]}")
            except AssertionError as exc:
                errors.append(str(exc))
            gw.cleanup()
        if errors:
            pytest.fail("\n".join(errors))


@pytest.fixture(scope="session", autouse=True)
def _asyncio_leak_watch() -> Iterator[LeakWatch]:
    watch = LeakWatch().install()
    try:
        yield watch
    finally:
        watch.uninstall()
    leaks = watch.take()
    if leaks:
        pytest.fail("a session- or module-scoped fixture leaked asyncio tasks:\n  " + "\n  ".join(leaks))


@pytest.fixture(autouse=True)
def no_asyncio_task_leaks(_asyncio_leak_watch: LeakWatch) -> Iterator[None]:
    """Fail a test that leaves an asyncio task pending when its event loop ends (see tests/asyncio_leaks.py)."""
    _asyncio_leak_watch.forget_loops()  # loops of wider fixtures, already set up, may legitimately stay open
    earlier = _asyncio_leak_watch.take()
    if earlier:
        pytest.fail("a fixture torn down before this test leaked asyncio tasks:\n  " + "\n  ".join(earlier))
    yield
    leaks = _asyncio_leak_watch.take()
    if leaks:
        pytest.fail("asyncio tasks leaked (still pending when their loop ended):\n  " + "\n  ".join(leaks))
