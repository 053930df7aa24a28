"""The simulated model server: a capacity with a waiting queue, a prefix cache, vLLM gauges."""

from __future__ import annotations

import threading

import httpx

from extproc.picker.engines import parse_load
from fakeprovider.model_server import ModelServerThread, SimConfig
from tests.harness import free_port, wait_until


def test_queue_prefix_cache_and_gauges() -> None:
    port = free_port()
    sim = ModelServerThread(
        host="127.0.0.1", port=port, name="sim", config=SimConfig(capacity=1, decode_ms_per_token=5)
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        prompt = "You are a helpful assistant. " * 40
        body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 2}
        assert httpx.post(base + "/v1/chat/completions", json=body).status_code == 200
        first = sim.server.cache_hits
        assert httpx.post(base + "/v1/chat/completions", json=body).status_code == 200
        assert sim.server.cache_hits > first  # the repeated prefix was cached

        # Two long requests at once on a capacity of 1: one runs, one waits.
        long = {**body, "max_tokens": 120}
        results: list[int] = []

        def send() -> None:
            results.append(httpx.post(base + "/v1/chat/completions", json=long, timeout=30).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        load = wait_until(
            lambda: (lambda ld: ld if ld.waiting == 1 else None)(parse_load(httpx.get(base + "/metrics").text)),
            "one request waiting",
        )
        assert load.running == 1 and load.kv_usage == 1.0
        for t in threads:
            t.join(30)
        assert results == [200, 200]
        assert parse_load(httpx.get(base + "/metrics").text).waiting == 0
        stream = httpx.post(base + "/v1/chat/completions", json={**body, "stream": True})
        assert stream.text.count("data: ") == 3 and stream.text.endswith("data: [DONE]\n\n")
    finally:
        sim.stop()
