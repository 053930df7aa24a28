"""A model server speaking HTTP/2 over cleartext (h2c, prior knowledge), for InferencePool `appProtocol`.

A minimal OpenAI chat completions endpoint under hypercorn, on a background
thread; it records the HTTP version of every chat request it served (`versions`;
other paths, such as a picker's GET /metrics, get a 404 and are not recorded).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config


class H2cModelServer:
    def __init__(self, *, host: str, port: int, name: str) -> None:
        self.host, self.port, self.name = host, port, name
        self.versions: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"h2c-{name}", daemon=True)
        self._started = threading.Event()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if not str(scope.get("path", "")).endswith("/chat/completions"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.versions.append(str(scope.get("http_version")))
        message = {"role": "assistant", "content": f"h2c {self.name}"}
        body = orjson.dumps(
            {
                "id": "chatcmpl-h2c",
                "object": "chat.completion",
                "created": 0,
                "model": "qwen",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None

        async def main() -> None:
            assert self._stop is not None
            self._loop.call_soon(self._started.set)
            await serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self._loop.run_until_complete(main())
        self._loop.close()

    def start(self) -> H2cModelServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
