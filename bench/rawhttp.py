"""A minimal HTTP/1.1 client on raw asyncio streams, for the latency figures.

Why not httpx or the openai SDK: their per-request and per-chunk work (header
objects, decoding, pydantic models) is hundreds of microseconds, the same
order as the gateway overhead being measured. This client writes the request
bytes, parses the status line, headers and chunked encoding, and hands each
body piece to a callback the moment it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from upstream import CLIENT_KEY


class Conn:
    """One keep-alive connection, reopened when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    def for_url(cls, url: str) -> tuple[Conn, str]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80), path

    async def ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def post(
    conn: Conn,
    path: str,
    body: bytes,
    on_data: Callable[[bytes], None] | None = None,
    headers: Mapping[str, str] | None = None,
) -> int:
    """POST `body` as JSON and read the whole response, passing each body piece to `on_data`; the status."""
    reader, writer = await conn.ensure()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {CLIENT_KEY}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        writer.write(head + body)
        status_and_headers = await reader.readuntil(b"\r\n\r\n")
        lines = status_and_headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        got = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        chunked = "chunked" in got.get("transfer-encoding", "").lower()
        length = int(got.get("content-length", "-1"))
        received = 0
        while True:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = (await reader.readexactly(size + 2))[:-2]
            elif length >= 0:
                if received >= length:
                    break
                data = await reader.read(min(65536, length - received))
            else:
                data = await reader.read(65536)
            if not data:
                break
            received += len(data)
            if on_data is not None:
                on_data(data)
    except BaseException:
        conn.close()
        raise
    if got.get("connection", "").lower() == "close" or (not chunked and length < 0):
        conn.close()
    return status
