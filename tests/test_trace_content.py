"""Prompts and completions for traces (opt-in): picked from the bodies, bounded."""

from __future__ import annotations

import orjson

from extproc.trace_content import MAX_CHARS, input_messages, output_messages


def test_input_messages_of_each_api() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert orjson.loads(input_messages(chat) or "") == chat["messages"]
    anthropic = {"model": "m", "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}
    assert orjson.loads(input_messages(anthropic) or "") == {"system": "be brief", "messages": anthropic["messages"]}
    assert orjson.loads(input_messages({"model": "m", "input": ["a", "b"]}) or "") == ["a", "b"]
    assert input_messages({"model": "m"}) is None


def test_output_messages_of_each_api() -> None:
    openai_body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"}}]}
    assert orjson.loads(output_messages(orjson.dumps(openai_body)) or "") == [{"role": "assistant", "content": "yo"}]
    anthropic_body = {"type": "message", "content": [{"type": "text", "text": "yo"}]}
    assert orjson.loads(output_messages(orjson.dumps(anthropic_body)) or "") == anthropic_body["content"]
    assert output_messages(b"not json") is None
    assert output_messages(b'{"data": []}') is None


def test_content_is_bounded() -> None:
    text = input_messages({"messages": [{"role": "user", "content": "x" * (3 * MAX_CHARS)}]}) or ""
    assert len(text) == MAX_CHARS and text.endswith("...[truncated]")
