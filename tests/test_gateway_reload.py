"""Hot reload under traffic: key rotation, a new backend, a broken edit; no request fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import openai
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = pytest.mark.integration

EXTRA_BACKEND = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: extra, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /v1}}
          headers: [{{name: x-gateway-model-name, value: new-model}}]
      backendRefs: [{{group: llmgw.dev, kind: AIBackend, name: extra}}]
---
apiVersion: llmgw.dev/v1alpha1
kind: AIBackend
metadata: {{name: extra, namespace: default}}
spec:
  ai: {{provider: {{custom: {{model: renamed-upstream}}, host: 127.0.0.1, port: {port}}}}}
"""


class Traffic:
    """Requests in a loop (JSON and streams, each slow enough to span a reload)."""

    def __init__(self, url: str) -> None:
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="client", max_retries=0, timeout=20)
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(4)]

    def _run(self, i: int) -> None:
        while not self._stop.is_set():
            try:
                if i % 2:
                    chunks = list(
                        self.client.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "stream"}], stream=True
                        )
                    )
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                    assert text.endswith("stream"), text
                else:
                    r = self.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
                    assert r.choices[0].message.content
                self.ok += 1
            except Exception as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


@pytest.fixture
def providers() -> Iterator[tuple[FakeProviderThread, FakeProviderThread]]:
    a = FakeProviderThread(name="A").start()
    b = FakeProviderThread(name="B").start()
    a.set_behaviour(latency_ms=150, chunks=5, chunk_interval_ms=40)
    yield a, b
    a.stop()
    b.stop()


def test_reload_under_traffic(
    gateway_factory: type[GatewayProcess], providers: tuple[FakeProviderThread, FakeProviderThread]
) -> None:
    a, b = providers
    gw = gateway_factory(workers=2)
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=a.port, key="sk-one"))
    gw.start()
    with Traffic(gw.url) as traffic:
        wait_until(lambda: traffic.ok >= 8, what="traffic before the change")

        # 1. rotate the key in the Secret: the next requests carry the new key
        gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=a.port, key="sk-two"))
        wait_until(
            lambda: any(r.headers.get("authorization") == "Bearer sk-two" for r in a.requests),
            what="the rotated key upstream",
        )
        a.clear()
        wait_until(lambda: len(a.requests) >= 8, what="traffic after rotation")
        assert {r.headers["authorization"] for r in a.requests} == {"Bearer sk-two"}

        # 2. add a backend and a model route while traffic flows
        gw.write("extra.yaml", EXTRA_BACKEND.format(port=b.port))
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client", max_retries=0)

        def routed_to_b() -> bool:
            r = client.chat.completions.create(model="new-model", messages=[{"role": "user", "content": "n"}])
            return (r.choices[0].message.content or "").startswith("Hello from B")

        wait_until(routed_to_b, what="the new backend")
        assert b.requests[-1].json["model"] == "renamed-upstream"

        # 3. a broken edit is rejected and the last good config keeps serving
        gw.write("extra.yaml", "kind: [this is not valid")
        wait_until(lambda: "configuration change rejected" in gw.log(), what="the rejection in the log")
        ok_before = traffic.ok
        wait_until(lambda: traffic.ok >= ok_before + 8, what="traffic after the broken edit")
        assert routed_to_b()
    assert traffic.failures == []
    assert "sk-one" not in gw.log() and "sk-two" not in gw.log()
