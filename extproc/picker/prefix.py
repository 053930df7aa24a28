"""Approximate prefix-cache affinity: which endpoint was last sent each prompt prefix.

A model server keeps the KV cache of the prompts it computed; a request whose
prompt starts like an earlier one is cheaper where that one ran. The picker
cannot see the servers' caches, so (like the GIE reference picker's prefix
scorer) it remembers where it routed: the prompt is cut into 256-character
blocks, each block's hash chains every block before it (so a block matches
only with the same prefix), and an LRU table maps a block hash to the
endpoints it was sent to. A request's affinity for an endpoint is the share of
its leading blocks (up to 32) found there, in order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

BLOCK_CHARS = 256
MAX_BLOCKS = 32
TABLE_SIZE = 100_000


def prompt_text(body: Mapping[str, Any]) -> str:
    """The prompt as the server sees it, roughly: messages' text in order (chat, Anthropic), or `prompt`."""
    parts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        parts.append(system)
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, Mapping) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(c.get("text", "")) for c in content if isinstance(c, Mapping))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    return "\n".join(parts)


def blocks(text: str) -> list[bytes]:
    """Chained hashes of the leading blocks of `text` (a trailing partial block does not count)."""
    digest = hashlib.blake2b(digest_size=12)
    out: list[bytes] = []
    for start in range(0, min(len(text), BLOCK_CHARS * MAX_BLOCKS), BLOCK_CHARS):
        block = text[start : start + BLOCK_CHARS]
        if len(block) < BLOCK_CHARS:
            break
        digest.update(block.encode())
        out.append(digest.digest())
    return out


class PrefixIndex:
    def __init__(self, *, size: int = TABLE_SIZE) -> None:
        self.size = size
        self.table: OrderedDict[bytes, set[str]] = OrderedDict()

    def affinity(self, hashes: list[bytes], endpoints: Iterable[str]) -> dict[str, float]:
        """Per endpoint, the share of `hashes` matched from the start."""
        if not hashes:
            return {}
        out: dict[str, float] = {}
        for ep in endpoints:
            n = 0
            for h in hashes:
                seen = self.table.get(h)
                if seen is None or ep not in seen:
                    break
                n += 1
            if n:
                out[ep] = n / len(hashes)
        return out

    def record(self, hashes: list[bytes], endpoint: str) -> None:
        for h in hashes:
            seen = self.table.get(h)
            if seen is None:
                self.table[h] = {endpoint}
                if len(self.table) > self.size:
                    self.table.popitem(last=False)
            else:
                seen.add(endpoint)
                self.table.move_to_end(h)
