"""Other providers' wire formats, served by the same fake provider.

Each module in this package defines `DIALECT` (see `Dialect`); they are found
by name, so adding a provider's wire format is one new module. A dialect is
asked first; paths no dialect claims fall through to the OpenAI format.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from fakeprovider.behaviour import Behaviour


@dataclass
class Exchange:
    """One request as a dialect sees it, with the faults already chosen for it."""

    request: web.Request
    body: bytes
    data: Any  # parsed JSON, None for no body, respond.INVALID_JSON for bad JSON
    behaviour: Behaviour
    name: str  # the provider's name (reply text says "Hello from NAME: ...")
    error_status: int | None  # inject this error, in the dialect's own error schema
    cut_after: int | None  # streams: abort after this many events


class Dialect(Protocol):
    name: str

    def matches(self, method: str, path: str) -> bool: ...

    def is_streaming(self, path: str, data: Any) -> bool: ...

    async def respond(self, ex: Exchange) -> web.StreamResponse: ...


def _load() -> list[Dialect]:
    found: list[Dialect] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        dialect = getattr(module, "DIALECT", None)
        if dialect is not None:
            found.append(dialect)
    return found


DIALECTS: list[Dialect] = _load()


def find(method: str, path: str) -> Dialect | None:
    for dialect in DIALECTS:
        if dialect.matches(method, path):
            return dialect
    return None
