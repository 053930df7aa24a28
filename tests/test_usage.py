"""Token usage (`extproc.usage`): normalized from OpenAI's shape, `None` when not reported, merged field by field."""

from __future__ import annotations

import pytest

from extproc.usage import Usage, from_openai


def test_usage_chat_with_cached_tokens() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
        }
    )
    assert usage == Usage(input=120, output=30, cache_read=100, cache_write=None)


def test_usage_embeddings_has_no_output() -> None:
    assert from_openai({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8, output=None)


@pytest.mark.parametrize(
    "garbage", [None, "12", 12, [1, 2], {"prompt_tokens": "12", "completion_tokens": True}], ids=repr
)
def test_usage_garbage(garbage: object) -> None:
    usage = from_openai(garbage)
    assert usage is None or usage == Usage()


def test_usage_garbage_details_ignored() -> None:
    assert from_openai({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": None}) == Usage(
        input=3, output=1
    )


def test_usage_merged_later_wins_field_by_field() -> None:
    first = Usage(input=10, cache_read=4)
    later = Usage(output=7, cache_read=5)
    assert first.merged(later) == Usage(input=10, output=7, cache_read=5, cache_write=None)
    assert first.merged(Usage()) == first
