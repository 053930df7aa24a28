"""The Anthropic Messages wire format shared by the pairs whose provider speaks it.

Anthropic itself and Vertex AI's Claude: the `anthropic-version` the backend
pins, and usage normalization. Anthropic's `input_tokens` excludes cache reads
and cache writes, our `Usage.input` is the total, so they are added back
exactly once, here. Pair modules import this, never each other.
"""

from __future__ import annotations

from typing import Any

from extproc.providers import anthropic
from extproc.translate.base import RequestContext
from extproc.usage import Usage, total_input

DEFAULT_API_VERSION = "2023-06-01"
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class AnthropicUsage:
    """Raw Anthropic usage counters, merged as a stream reports them.

    `message_start` carries the input side (and an early output count);
    `message_delta` carries cumulative counts, newest wins field by field, so a
    later event that omits a field never erases an earlier report.
    """

    def __init__(self) -> None:
        self.raw: dict[str, int] = {}

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in _USAGE_FIELDS:
            value = _int(usage.get(name))
            if value is not None:
                self.raw[name] = value

    def normalized(self) -> Usage | None:
        """Our `Usage` (input = total input incl. cache reads and writes); None if nothing was reported."""
        if not self.raw:
            return None
        raw = self.raw
        base = raw.get("input_tokens")
        read = raw.get("cache_read_input_tokens")
        write = raw.get("cache_creation_input_tokens")
        total = total_input(base, read, write, includes_cached=anthropic.input_includes_cached)
        return Usage(input=total, output=raw.get("output_tokens"), cache_read=read, cache_write=write)


def usage_from_anthropic(usage: Any) -> Usage | None:
    """A complete Anthropic `usage` object (a JSON response) as our `Usage`."""
    acc = AnthropicUsage()
    acc.update(usage)
    return acc.normalized()


def api_version(ctx: RequestContext) -> str | None:
    """The `anthropic-version` the backend pins (`apiVersion` in the manifest), if any."""
    if ctx.provider is None:
        return None
    value = ctx.provider.settings.get("apiVersion")
    return value if isinstance(value, str) and value else None
