"""Token usage: optional, normalized once (DESIGN convention 5).

`None` means "the provider did not say", never 0. OpenAI's prompt_tokens
include cached tokens; `input` here is the total input, `cache_read` the
cached part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None

    def merged(self, other: Usage) -> Usage:
        """Later reports win field by field (streams may report input and output separately)."""
        return Usage(
            input=other.input if other.input is not None else self.input,
            output=other.output if other.output is not None else self.output,
            cache_read=other.cache_read if other.cache_read is not None else self.cache_read,
            cache_write=other.cache_write if other.cache_write is not None else self.cache_write,
        )


def total_input(
    reported: int | None, cache_read: int | None, cache_write: int | None, *, includes_cached: bool
) -> int | None:
    """Our `Usage.input` (all input tokens) from a provider's reported input count.

    `includes_cached` is the provider module's `input_includes_cached`: OpenAI and
    Gemini count cached tokens in their input, Anthropic and Bedrock do not, so
    theirs are added back here, once.
    """
    if reported is None:
        return None
    return reported if includes_cached else reported + (cache_read or 0) + (cache_write or 0)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def from_openai(usage: Any) -> Usage | None:
    """OpenAI chat/completions/embeddings `usage` object."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    output = _int(usage.get("completion_tokens"))
    if output is None and "prompt_tokens" in usage and "completion_tokens" not in usage:
        output = None  # embeddings: no output tokens reported
    return Usage(input=_int(usage.get("prompt_tokens")), output=output, cache_read=cached)
