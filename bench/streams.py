"""Time to first token, measured with the raw HTTP/1.1 client of `rawhttp`.

The time runs from writing the request to the first SSE event whose
`choices[0].delta.content` is non-empty (the client parses nothing else).
It runs streams one after another on one keep-alive connection (c=1), so no
queueing hides in the numbers; "added TTFT" is a system's median minus the
direct median of the same round.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rawhttp import Conn, post


@dataclass
class StreamSample:
    ttft_ms: float
    total_ms: float
    events: int


def _has_content(event: bytes) -> bool:
    """True for an OpenAI chunk with `choices[0].delta.content`, or an Anthropic `content_block_delta` with text."""
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            return False
        try:
            data = json.loads(payload)
        except ValueError:
            return False
        if data.get("type") == "content_block_delta":
            return bool((data.get("delta") or {}).get("text"))
        choices = data.get("choices") or []
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    return False


async def _one(conn: Conn, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> StreamSample:
    t0 = time.perf_counter()
    ttft: float | None = None
    buf = b""
    events = 0

    def on_data(data: bytes) -> None:
        nonlocal buf, events, ttft
        buf += data.replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            events += 1
            if ttft is None and _has_content(event):
                ttft = (time.perf_counter() - t0) * 1000

    status = await post(conn, path, body, on_data, headers)
    total = (time.perf_counter() - t0) * 1000
    if status != 200 or ttft is None:
        raise RuntimeError(f"stream failed: HTTP {status}, {events} events")
    return StreamSample(ttft, total, events)


async def _run(
    url: str, body: bytes, seconds: float, max_streams: int, headers: Mapping[str, str] | None
) -> list[StreamSample]:
    conn, path = Conn.for_url(url)
    samples: list[StreamSample] = []
    deadline = time.monotonic() + seconds
    try:
        await _one(conn, path, body, headers)  # warm: connection, and any lazy setup on the way
        while time.monotonic() < deadline and len(samples) < max_streams:
            samples.append(await asyncio.wait_for(_one(conn, path, body, headers), timeout=60))
    finally:
        conn.close()
    return samples


def ttft(
    *, url: str, body: bytes, seconds: float, max_streams: int = 10_000, headers: Mapping[str, str] | None = None
) -> list[StreamSample]:
    """Sequential streams on one connection for `seconds` (bounded by `max_streams`)."""
    try:
        import uvloop

        return uvloop.run(_run(url, body, seconds, max_streams, headers))
    except ImportError:  # pragma: no cover - uvloop is in the project's venv
        return asyncio.run(_run(url, body, seconds, max_streams, headers))
