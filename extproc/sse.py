"""Incremental Server-Sent Events splitting that survives events cut across chunks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    raw: bytes  # the event's bytes including its terminating blank line
    data: bytes  # the joined `data:` lines (b"" if none)
    event: str = ""


class SSEDecoder:
    """Feed bytes, get complete events; a partial event waits for the next chunk."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            raw = buf[start : end + 2]
            events.append(_parse(raw))
            start = end + 2
        self._buf = buf[start:]
        return events

    def flush(self) -> bytes:
        """Whatever incomplete tail is left (a stream cut mid-event)."""
        rest, self._buf = self._buf, b""
        return rest


def _parse(raw: bytes) -> SSEEvent:
    data: list[bytes] = []
    event = ""
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
    return SSEEvent(raw=raw, data=b"\n".join(data), event=event)
