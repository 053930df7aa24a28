"""Prompts and completions for traces, only when the operator opted in (`llmgw run --trace-content`).

The router stage already holds the parsed request body and the response body
in the client's schema; this module picks the messages out of them and bounds
their size, so a span never carries a whole document. Nothing here runs unless
the opt-in is set: by default no prompt or completion leaves the gateway.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_CHARS = 8192  # per attribute; longer content is cut and marked
_TRUNCATED = "...[truncated]"
# Request fields holding what the client sent, by API (chat, responses, completions, embeddings, Anthropic).
_INPUT_FIELDS = ("messages", "input", "prompt")


def _bounded(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - len(_TRUNCATED)] + _TRUNCATED


def input_messages(body: dict[str, Any]) -> str | None:
    """The request's messages (or input, or prompt), with the system prompt where the API keeps it apart."""
    for key in _INPUT_FIELDS:
        value = body.get(key)
        if value is not None:
            system = body.get("system")
            return _bounded({"system": system, key: value} if system is not None else value)
    return None


def output_messages(raw: bytes) -> str | None:
    """What the client got from a JSON response in its schema: OpenAI choices' messages, Anthropic content."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if isinstance(choices, list):
        out = [c.get("message", c.get("text")) for c in choices if isinstance(c, dict)]
        return _bounded(out)
    if body.get("type") == "message" and "content" in body:
        return _bounded(body["content"])
    if "output" in body:  # Responses API
        return _bounded(body["output"])
    return None
