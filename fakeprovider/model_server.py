"""A simulated model server (vLLM-like), for endpoint-picker tests and the InferencePool benchmark.

Like llm-d's inference simulator, it answers the OpenAI chat completions API
(JSON or SSE) and the legacy completions API (JSON) with the costs of a real server, in virtual GPU time:

- at most `capacity` sequences run at once; the rest wait in a FIFO queue
  (`vllm:num_requests_waiting`), so a busy replica answers late;
- time to first token = `prefill_ms_per_kchar` x the prompt characters not in
  its prefix cache (hashed 256-character blocks of the prompt, LRU, the
  blocks this server computed before), after the queue;
- then `max_tokens` (default 16) tokens, `decode_ms_per_token` each, slower
  the fuller the batch (x (1 + running / capacity));
- `/metrics`: `vllm:num_requests_waiting`, `vllm:num_requests_running`,
  `vllm:kv_cache_usage_perc` (running / capacity) and
  `vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total`.

`ModelServerThread` runs one on a background thread for synchronous code.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

BLOCK_CHARS = 256


@dataclass(frozen=True)
class SimConfig:
    capacity: int = 4
    prefill_ms_per_kchar: float = 20.0
    decode_ms_per_token: float = 8.0
    default_max_tokens: int = 16
    prefix_cache_blocks: int = 2048


class ModelServer:
    def __init__(self, *, name: str, config: SimConfig | None = None) -> None:
        self.name = name
        self.config = config or SimConfig()
        self.running = 0
        self.queue: deque[asyncio.Future[None]] = deque()
        self.cache: OrderedDict[bytes, None] = OrderedDict()
        self.served = 0
        self.cache_hits = 0
        self.cache_queries = 0
        self.scrapes: dict[str, int] = {}  # GET /metrics per User-Agent (one per scraper)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- scheduling ---------------------------------------------------------------------

    async def _admit(self) -> None:
        if self.running < self.config.capacity and not self.queue:
            self.running += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(fut)
        try:
            await fut  # the slot is handed over by _release (running stays counted)
        except asyncio.CancelledError:
            if fut in self.queue:
                self.queue.remove(fut)
            elif fut.done() and not fut.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        while self.queue:
            fut = self.queue.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over
                return
        self.running -= 1

    def _uncached_chars(self, prompt: str) -> int:
        """Characters of `prompt` whose blocks this server has not computed; caches them."""
        uncached = 0
        digest = hashlib.blake2b(digest_size=16)
        for start in range(0, len(prompt), BLOCK_CHARS):
            block = prompt[start : start + BLOCK_CHARS]
            digest.update(block.encode())
            key = digest.digest()  # the hash chains every block before it, as a KV prefix cache does
            self.cache_queries += 1
            if key in self.cache:
                self.cache_hits += 1
                self.cache.move_to_end(key)
            else:
                uncached += len(block)
                self.cache[key] = None
                if len(self.cache) > self.config.prefix_cache_blocks:
                    self.cache.popitem(last=False)
        return uncached

    # --- HTTP ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = orjson.loads(await request.read())
            messages = body["messages"]
            prompt = "".join(str(m.get("content", "")) for m in messages)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return web.json_response({"error": {"message": "bad request", "type": "invalid_request_error"}}, status=400)
        max_tokens = int(body.get("max_tokens") or self.config.default_max_tokens)
        stream = body.get("stream") is True
        model = str(body.get("model", self.name))
        await self._admit()
        try:
            prefill = self.config.prefill_ms_per_kchar * self._uncached_chars(prompt) / 1000
            await asyncio.sleep(prefill / 1000)
            if stream:
                try:
                    return await self._stream(request, model, max_tokens)
                except ConnectionResetError:  # the client went away: abort the sequence, as vLLM does
                    return web.Response(status=499)
            for _ in range(max_tokens):
                await asyncio.sleep(self._token_ms() / 1000)
        finally:
            self._release()
        self.served += 1
        return web.json_response(
            {
                "id": "chatcmpl-sim",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "tok " * max_tokens},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": max_tokens, "total_tokens": 0},
            }
        )

    async def _completions(self, request: web.Request) -> web.Response:
        """The legacy completions API (`prompt`), as the GIE getting-started guide's curl sends it."""
        try:
            body: Any = orjson.loads(await request.read())
            prompt = body["prompt"]
            prompt = "".join(str(p) for p in prompt) if isinstance(prompt, list) else prompt
            if not isinstance(prompt, str) or body.get("stream") is True:
                raise TypeError("prompt must be a string; streaming is simulated on chat completions only")
            max_tokens = int(body.get("max_tokens") or self.config.default_max_tokens)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return web.json_response({"error": {"message": "bad request", "type": "invalid_request_error"}}, status=400)
        model = str(body.get("model", self.name))
        await self._admit()
        try:
            await asyncio.sleep(self.config.prefill_ms_per_kchar * self._uncached_chars(prompt) / 1000 / 1000)
            for _ in range(max_tokens):
                await asyncio.sleep(self._token_ms() / 1000)
        finally:
            self._release()
        self.served += 1
        return web.json_response(
            {
                "id": "cmpl-sim",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "text": "tok " * max_tokens, "logprobs": None, "finish_reason": "length"}],
                "usage": {
                    "prompt_tokens": len(prompt) // 4,
                    "completion_tokens": max_tokens,
                    "total_tokens": len(prompt) // 4 + max_tokens,
                },
            }
        )

    def _token_ms(self) -> float:
        return self.config.decode_ms_per_token * (1 + self.running / self.config.capacity)

    async def _stream(self, request: web.Request, model: str, max_tokens: int) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(max_tokens):
            chunk = {
                "id": "chatcmpl-sim",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if i < max_tokens - 1:
                await asyncio.sleep(self._token_ms() / 1000)
        await resp.write(b"data: [DONE]\n\n")
        self.served += 1
        await resp.write_eof()
        return resp

    async def _metrics(self, request: web.Request) -> web.Response:
        agent = request.headers.get("User-Agent", "")
        self.scrapes[agent] = self.scrapes.get(agent, 0) + 1
        gauges = (
            ("vllm:num_requests_waiting", "gauge", len(self.queue)),
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:kv_cache_usage_perc", "gauge", self.running / self.config.capacity),
            ("vllm:prefix_cache_hits", "counter", self.cache_hits),
            ("vllm:prefix_cache_queries", "counter", self.cache_queries),
        )
        lines = []
        for name, kind, value in gauges:
            sample = f"{name}_total" if kind == "counter" else name
            lines.append(f'# TYPE {name} {kind}\n{sample}{{model_name="{self.name}"}} {value}\n')
        return web.Response(text="".join(lines), content_type="text/plain")

    async def start(self, *, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ModelServerThread:
    """A `ModelServer` on its own event loop thread."""

    def __init__(self, *, host: str, port: int, name: str, config: SimConfig | None = None) -> None:
        self.host, self.port = host, port
        self.server = ModelServer(name=name, config=config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"model-server-{name}", daemon=True)

    def start(self) -> ModelServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(host=self.host, port=self.port), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
