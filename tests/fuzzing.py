"""Seeded generators of ill-formed request bodies, shared by the unit fuzz and the gateway fuzz.

Bodies start from a valid request of each client schema and get a few values
replaced by ill-typed ones, keys dropped or unknown keys added; raw-byte cases
cover what no JSON value can express (truncation, bad UTF-8, nesting deeper
than orjson reads or writes). A seed makes every run send the same bodies.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import orjson

OPENAI_CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "user", "content": "more"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    "tool_choice": "auto",
    "max_tokens": 100,
    "temperature": 0.5,
    "stop": ["x"],
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    "reasoning_effort": "low",
    "user": "u",
}
ANTHROPIC: dict[str, Any] = {
    "model": "m",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "s"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r"}]}],
        },
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "stop_sequences": ["x"],
    "metadata": {"user_id": "u"},
}

VALUES: list[Any] = [None, True, False, 0, -1, 7, 1.5, "", "x", "yes", "wizard", [], [1], ["a"], {}, [{}], [None]]
VALUES += [{"type": 1}, {"type": "text"}, {"type": "function"}, {"function": 1}, {"name": {}}, "a\r\nb", 2**63 - 1]
MODELS: list[Any] = ["a\r\nb", "a\nx-injected: 1", "a\x00b", "a\x7fb", "\t", "m" * 70_000, "é模型", "", 5, None, ["m"]]


def deep(levels: int) -> list[Any]:
    """`levels` nested arrays (built in a loop: no recursion)."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def dumps(value: Any) -> bytes:
    """JSON for any value here, nesting orjson.dumps refuses (over 254 levels) included."""
    if isinstance(value, list):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + dumps(v) for k, v in value.items()) + b"}"
    return orjson.dumps(value)


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from paths(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from paths(sub, (*path, i))


def mutated(seed: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The seed with 1-3 values replaced by ill-typed ones, keys dropped or unknown keys added."""
    body = copy.deepcopy(seed)
    for _ in range(rng.randint(1, 3)):
        candidates = [p for p in paths(body) if p]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        roll = rng.random()
        value = deep(rng.choice((200, 300))) if roll < 0.03 else copy.deepcopy(rng.choice(VALUES))
        if roll < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif roll < 0.25 and isinstance(parent, dict):
            parent[f"unknown_{rng.randint(0, 3)}"] = value
        else:
            parent[path[-1]] = value
    return body


def raw_cases(seed: bytes) -> list[bytes]:
    """Bodies no JSON value describes: truncated, not UTF-8, not an object, nested 300 and 2000 deep."""
    return [
        b"",
        b"{",
        seed[: len(seed) // 2],
        b"null",
        b"[]",
        b'"m"',
        b"\xff\xfe{}",
        seed.replace(b'"m"', b'"\xff"', 1),
        b"\xef\xbb\xbf" + seed,  # a UTF-8 byte order mark
        seed[:-1] + b', "temperature": NaN}',
        seed[:-1] + b', "max_tokens": 1e400}',
        seed[:-1] + b', "model": "other"}',  # a duplicate key
        seed[:-1] + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}",
        seed[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        seed[:-1] + b', "x": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}",
    ]
