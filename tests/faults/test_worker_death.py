"""An extproc worker killed (SIGKILL) under load must never make a failure look like success.

Through the real gateway (two extproc workers) to the fake provider's Anthropic
dialect, with OpenAI clients: the response of every request is translated by
the router stage. Workers are killed while JSON requests and streams are in
flight. Allowed outcomes per request: a translated 200, an error status, or a
stream that breaks off (transport error). Never: a 200 whose body is not in
the client's schema (raw Anthropic JSON or events), nor a stream that ends
cleanly without `[DONE]` (an OpenAI SDK takes a clean end for the whole answer).

The mechanism this guards against (issue: "200 with the untranslated upstream
body"): a restarted worker served ext_proc streams before its config arrived,
and its router stage took the Anthropic answer for the client's own schema.
Workers now listen only once they have a config, and the router stage fails
a request whose answering provider it does not know.

Raw httpx clients rather than the SDKs: the assertions need to tell a clean end
of a stream from a broken one, which the SDKs hide.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import REPO, GatewayProcess, wait_until
from tests.test_gateway_anthropic import CLIENT_KEY, manifests

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CLIENTS = 6
KILLS = 4
LOAD_SECONDS = 8.0  # the load's length bounds the test, nothing is asserted about it
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture
def provider() -> Iterator[FakeProviderThread]:
    fp = FakeProviderThread(name="fake").start()
    # Latency and a paced stream keep requests in flight when a worker dies.
    fp.set_behaviour(latency_ms=100, chunks=8, chunk_interval_ms=40)
    try:
        yield fp
    finally:
        fp.stop()


@pytest.fixture
def gateway(provider: FakeProviderThread, gateway_factory: type[GatewayProcess]) -> GatewayProcess:
    gw = gateway_factory(workers=2)
    gw.write("gw.yaml", manifests(port=gw.port, upstream_port=provider.port))
    return gw.start()


def extproc_pids(gw: GatewayProcess) -> list[int]:
    pids = []
    for pid in gw.child_pids():
        with contextlib.suppress(OSError):
            if b"-m\x00extproc\x00" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return sorted(pids)


def json_outcome(resp: httpx.Response) -> str:
    if resp.status_code != 200:
        return "error status"
    try:
        doc = resp.json()
    except ValueError:
        return f"BAD: 200 with a body that is not JSON: {resp.text[:200]!r}"
    if isinstance(doc, dict) and doc.get("object") == "chat.completion" and doc.get("choices"):
        return "ok"
    return f"BAD: 200 with a body not in the OpenAI schema: {resp.text[:200]!r}"


def stream_outcome(client: httpx.Client, url: str, body: dict[str, object]) -> str:
    events: list[str] = []
    try:
        with client.stream("POST", url, json=body, headers=HEADERS) as resp:
            if resp.status_code != 200:
                resp.read()
                return "error status"
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
    except httpx.TransportError:
        return "stream broken off"  # the client sees an error: fine
    foreign = [e for e in events if e != "[DONE]" and '"chat.completion.chunk"' not in e]
    if foreign:
        return f"BAD: 200 stream with an event not in the OpenAI schema: {foreign[0][:200]!r}"
    if not events:
        return "BAD: 200 stream that ended cleanly with no event"
    if events[-1] != "[DONE]":
        return f"BAD: 200 stream that ended cleanly without [DONE] after {len(events)} events"
    return "ok"


def test_killed_workers_never_yield_an_untranslated_or_complete_looking_answer(gateway: GatewayProcess) -> None:
    url = gateway.url + "/v1/chat/completions"
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                n += 1
                body: dict[str, object] = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {i}/{n}"}]}
                if (i + n) % 2:
                    body["stream"] = True
                    outcome = stream_outcome(c, url, body)
                else:
                    try:
                        outcome = json_outcome(c.post(url, json=body, headers=HEADERS))
                    except httpx.TransportError:
                        outcome = "transport error"
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(CLIENTS)]
    for t in threads:
        t.start()
    killed = []
    try:
        for k in range(KILLS):
            time.sleep(LOAD_SECONDS / (KILLS + 1))
            # One worker, then every worker at once: when the first one is back, the
            # requests that piled up all land on a process that has only just started.
            pids = extproc_pids(gateway)
            for victim in pids if k % 2 else pids[:1]:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
        time.sleep(LOAD_SECONDS / (KILLS + 1))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert len(killed) >= KILLS
    bad = {k: v for k, v in outcomes.items() if k.startswith("BAD")}
    assert not bad, f"answers that look like success but are not: {bad} (all: {dict(outcomes)})"
    assert outcomes["ok"] > 0, dict(outcomes)

    # The gateway recovers: the supervisor restarted the workers and both stages work again.
    def answered() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "after"}]}
            return json_outcome(httpx.post(url, json=body, headers=HEADERS, timeout=10)) == "ok"
        return False

    wait_until(answered, timeout=30, what="a translated answer after the kills")
    assert "Segmentation fault" not in gateway.log()


def test_a_worker_dying_before_it_processed_anything_costs_no_request(gateway: GatewayProcess) -> None:
    """Streams refused by the dead (or restarting) worker are retried on the other one."""
    url = gateway.url + "/v1/chat/completions"
    victim = extproc_pids(gateway)[0]
    os.kill(victim, signal.SIGKILL)
    with httpx.Client(timeout=30) as c:
        for n in range(10):
            body: dict[str, object] = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"n{n}"}]}
            if n % 2:
                body["stream"] = True
                assert stream_outcome(c, url, body) == "ok"
            else:
                assert json_outcome(c.post(url, json=body, headers=HEADERS)) == "ok"


def test_a_worker_without_config_does_not_listen(tmp_path: Path) -> None:
    """Until its first config arrives a worker accepts no ext_proc stream (Envoy retries elsewhere)."""
    sock = tmp_path / "extproc.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "extproc", "--listen", f"unix:{sock}", "--config", f"unix:{tmp_path / 'none.sock'}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "LLMGW_LOG_LEVEL": "INFO"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        while line and "waiting for its config" not in line:
            line = proc.stderr.readline().decode()
        assert "waiting for its config" in line
        assert not sock.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
