"""Shared fixtures: the fake provider and the real gateway, cleaned up after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakeprovider import FakeProviderThread
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
