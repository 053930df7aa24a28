"""The control plane goes away and comes back: Envoy and the workers keep serving, then resync.

Runs the real `Standalone` supervisor in-process (its own event loop in a
thread) so the test can stop only its gRPC server (ADS + config channel) and
start a fresh one, as a restarted control plane would be: new server objects
with no memory of the previous streams.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import openai
import pytest

from controlplane.configchannel import ConfigChannel
from controlplane.standalone import Options, Standalone
from controlplane.xds.ads import AdsServer
from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def test_envoy_keeps_serving_while_control_plane_is_down(loop: LoopThread, fake: FakeProviderThread) -> None:
    ports = GatewayProcess(workers=1)  # only for its free ports and temp dirs
    ports.write("gw.yaml", gateway_manifests(port=ports.port, upstream_port=fake.port, key="sk-before"))
    opts = Options(
        paths=[str(ports.manifest_dir)],
        workers=2,
        listen_address="127.0.0.1",
        metrics_port=ports.metrics_port,
        ready_port=ports.ready_port,
        run_dir=str(ports.run_dir),
        envoy_concurrency=1,
        watch=False,
    )
    gw = Standalone(opts)
    compiled = gw.compile()
    assert compiled.ok, compiled.problems
    try:
        loop.run(gw.start(compiled))
        loop.run(gw.wait_ready())
        client = openai.OpenAI(base_url=ports.url + "/v1", api_key="client", max_retries=0, timeout=10)

        def chat(text: str) -> str:
            return (
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
                .choices[0]
                .message.content
                or ""
            )

        assert chat("one") == "Hello from fake: one"

        loop.run(gw.stop_control_plane())
        for i in range(10):  # served from the last config, keys included
            assert chat(f"down {i}") == f"Hello from fake: down {i}"
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-before"

        # A restarted control plane: fresh servers, and a changed key to prove the resync.
        ports.write("gw.yaml", gateway_manifests(port=ports.port, upstream_port=fake.port, key="sk-after"))
        gw.ads, gw.channel = AdsServer(), ConfigChannel()
        recompiled = gw.compile()
        assert recompiled.ok
        loop.run(gw.apply(recompiled))
        loop.run(gw.start_control_plane())
        wait_until(lambda: gw.ads.status.acks, timeout=40, what="Envoy to reconnect to ADS")
        wait_until(lambda: gw.channel.watchers >= 2, timeout=20, what="workers to resubscribe")
        fake.clear()
        assert chat("after") == "Hello from fake: after"
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-after"
        assert not gw.ads.status.nacks
    finally:
        loop.run(gw.stop())
        ports.cleanup()
