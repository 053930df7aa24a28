"""OpenAI wire format: the JSON bodies and SSE events the fake provider sends.

Pure functions from request fields to bytes, so the shapes can be checked
without a server and the handlers stay small. Field order follows what
api.openai.com sends; bodies are serialized once with orjson, and stream
events are built up front from a pre-serialized envelope so a stream costs one
small `orjson.dumps` per event.

Token counting is deliberately simple and deterministic so tests can assert
exact numbers: a "token" is a whitespace-separated word.
- chat: prompt_tokens = words over the text of all messages (min 1);
- completions: words over all string prompts plus the length of token-id
  prompts (min 1);
- embeddings: the same rule over all inputs (min 1);
- completion_tokens = words of the completion text.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import struct
from typing import Any

import orjson

FINGERPRINT = "fp_fake"
REPLY_ECHO_CHARS = 200
DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 8192

SSE_DONE = b"data: [DONE]\n\n"

MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
    }
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_WORD_RE = re.compile(r"\s*\S+")


# --- ids, errors -----------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """`chatcmpl-…`-style id; random so ids never collide across provider restarts."""
    return prefix + os.urandom(12).hex()


def error_type_for_status(status: int) -> str:
    """OpenAI-style error `type` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(
    *,
    status: int,
    message: str,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    """`{"error": {...}}` with the type derived from the status unless given."""
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": error_type or error_type_for_status(status),
                "param": param,
                "code": code if code is not None else _ERROR_CODES.get(status),
            }
        }
    )


# --- text and tokens -------------------------------------------------------------------


def count_words(text: str) -> int:
    """The fake tokenizer: whitespace-separated words."""
    return len(text.split())


def content_text(content: object) -> str:
    """Text of a message `content`: a string, or the text parts of a list, space-joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return " ".join(texts)
    return ""


def chat_prompt(messages: list[Any]) -> tuple[str, int]:
    """(text of the last user message, prompt_tokens) of a chat request."""
    last_user = ""
    words = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = content_text(message.get("content"))
        words += count_words(text)
        if message.get("role") == "user":
            last_user = text
    return last_user, max(1, words)


def completion_prompt(prompt: object) -> tuple[str, int] | None:
    """(text to echo, prompt_tokens) of a legacy completions `prompt`; None if malformed.

    A list of prompts yields one choice here (the last string is echoed), which
    keeps the fake simple; token-id prompts count one token per id.
    """
    if prompt is None:
        return "", 1
    units = _text_units(prompt)
    if units is None:
        return None
    echo = ""
    for text, _, is_text in units:
        if is_text:
            echo = text
    return echo, max(1, sum(tokens for _, tokens, _ in units))


def reply_text(*, name: str, prompt: str) -> str:
    """The deterministic completion: `Hello from NAME: <prompt, first 200 chars>`."""
    return f"Hello from {name}: {prompt[:REPLY_ECHO_CHARS]}"


def split_text(text: str, pieces: int) -> list[str]:
    """Split `text` into `pieces` non-empty parts whose concatenation is exactly `text`.

    Words (with their leading whitespace, like real tokens) are spread evenly;
    when more pieces than words are asked for, characters are spread instead
    (at most one piece per character).
    """
    if not text:
        return []
    pieces = max(1, pieces)
    words = _WORD_RE.findall(text)
    consumed = sum(map(len, words))
    if not words:
        words = [text]
    elif consumed < len(text):
        words[-1] += text[consumed:]
    if pieces <= len(words):
        k = len(words)
        return ["".join(words[i * k // pieces : (i + 1) * k // pieces]) for i in range(pieces)]
    size = len(text)
    pieces = min(pieces, size)
    return [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


def chat_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# --- chat completions ------------------------------------------------------------------


def chat_completion(*, completion_id: str, created: int, model: str, text: str, usage: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": FINGERPRINT,
        }
    )


def chat_stream_events(
    *,
    completion_id: str,
    created: int,
    model: str,
    pieces: list[str],
    usage: dict[str, Any] | None,
) -> list[bytes]:
    """SSE events of a streamed chat completion, without the final `[DONE]`.

    Role chunk, one chunk per piece, an empty-delta chunk with finish_reason,
    then (only when `usage` is given, i.e. `stream_options.include_usage`) a
    `choices: []` chunk carrying usage, with `"usage": null` on all earlier ones.
    """
    head, tail = _envelope(completion_id, created, model, "chat.completion.chunk", usage)
    choice_events = [{"role": "assistant", "content": "", "refusal": None}]
    choice_events += [{"content": piece} for piece in pieces]
    events = [head + orjson.dumps(_chat_choice(delta, None)) + tail for delta in choice_events]
    events.append(head + orjson.dumps(_chat_choice({}, "stop")) + tail)
    if usage is not None:
        events.append(_usage_event(head, usage))
    return events


def _chat_choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _envelope(
    completion_id: str, created: int, model: str, obj: str, usage: dict[str, Any] | None
) -> tuple[bytes, bytes]:
    """Pre-serialized `data: {...,"choices":[` head and `]...}\\n\\n` tail of a chunk."""
    head = (
        b'data: {"id":'
        + orjson.dumps(completion_id)
        + b',"object":"'
        + obj.encode()
        + b'","created":'
        + str(created).encode()
        + b',"model":'
        + orjson.dumps(model)
        + b',"system_fingerprint":"'
        + FINGERPRINT.encode()
        + b'","choices":['
    )
    tail = b'],"usage":null}\n\n' if usage is not None else b"]}\n\n"
    return head, tail


def _usage_event(head: bytes, usage: dict[str, Any]) -> bytes:
    return head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n"


# --- legacy completions ----------------------------------------------------------------


def text_completion(*, completion_id: str, created: int, model: str, text: str, usage: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
            "system_fingerprint": FINGERPRINT,
        }
    )


def completion_stream_events(
    *,
    completion_id: str,
    created: int,
    model: str,
    pieces: list[str],
    usage: dict[str, Any] | None,
) -> list[bytes]:
    """SSE events of a streamed legacy completion, without the final `[DONE]`."""
    head, tail = _envelope(completion_id, created, model, "text_completion", usage)
    events = [
        head + orjson.dumps({"text": piece, "index": 0, "logprobs": None, "finish_reason": None}) + tail
        for piece in pieces
    ]
    final = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    events.append(head + orjson.dumps(final) + tail)
    if usage is not None:
        events.append(_usage_event(head, usage))
    return events


# --- embeddings ------------------------------------------------------------------------


def embedding_inputs(value: object) -> list[tuple[str, int]] | None:
    """(hash key, tokens) per input of an embeddings `input`; None if malformed."""
    units = _text_units(value)
    if not units:
        return None
    return [(key, tokens) for key, tokens, _ in units]


def _text_units(value: object) -> list[tuple[str, int, bool]] | None:
    """(text or token-id key, tokens, is_text) per input: str, [str], [int] or [[int]]."""
    if isinstance(value, str):
        return [(value, count_words(value), True)]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) for item in value):
        return [(item, count_words(item), True) for item in value]
    if all(_is_token_id(item) for item in value):
        return [(f"ids:{value}", len(value), False)]
    if all(isinstance(item, list) and all(map(_is_token_id, item)) for item in value):
        return [(f"ids:{item}", len(item), False) for item in value]
    return None


def _is_token_id(item: object) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def embedding_vector(key: str, dimensions: int) -> list[float]:
    """Deterministic unit-length vector for `key`, rounded to float32 like OpenAI's."""
    raw = hashlib.shake_128(key.encode()).digest(4 * dimensions)
    values = [v / 2147483648.0 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def embeddings(
    *,
    model: str,
    inputs: list[tuple[str, int]],
    dimensions: int,
    base64_encoding: bool,
) -> bytes:
    """Embeddings list; base64 is the little-endian float32 array, as OpenAI sends."""
    data = []
    for index, (key, _) in enumerate(inputs):
        vector: list[float] | str = embedding_vector(key, dimensions)
        if base64_encoding:
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    prompt_tokens = max(1, sum(tokens for _, tokens in inputs))
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )


def model_object(model_id: str) -> bytes:
    return orjson.dumps({"id": model_id, "object": "model", "created": 0, "owned_by": "fake"})
