"""Slow and greedy clients through the real gateway, with raw sockets.

Each test sets small limits on the `llmgw run` command line, misbehaves as a
client would (headers a byte at a time, a body that never ends, connections
that stay idle, more connections than allowed) and checks that the gateway
ends it. Every wait is bounded by a deadline far above the configured limit;
nothing asserts how fast.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from fakeprovider import FakeProviderThread
from tests.harness import GatewayProcess, gateway_manifests, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

HEADERS_TIMEOUT = 2
REQUEST_TIMEOUT = 3
IDLE_TIMEOUT = 3
MAX_BODY = 1024 * 1024
CONNECTION_BUFFER = 65536
DEADLINE = 20.0  # far above every limit above: a failure means "never", not "slow"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderThread]:
    provider = FakeProviderThread(name="fake").start()
    yield provider
    provider.stop()


def _start(fake: FakeProviderThread, *args: str) -> GatewayProcess:
    gw = GatewayProcess(workers=1, args=list(args))
    gw.write("gw.yaml", gateway_manifests(port=gw.port, upstream_port=fake.port))
    try:
        gw.start()
    except Exception:
        gw.cleanup()
        raise
    return gw


@pytest.fixture(scope="module")
def gateway(fake: FakeProviderThread) -> Iterator[GatewayProcess]:
    gw = _start(
        fake,
        "--request-headers-timeout",
        str(HEADERS_TIMEOUT),
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        "--max-body-bytes",
        str(MAX_BODY),
        "--connection-buffer-bytes",
        str(CONNECTION_BUFFER),
    )
    yield gw
    assert gw.stop() == 0
    gw.cleanup()


def _connect(gw: GatewayProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_until_closed(s: socket.socket, deadline: float) -> bytes | None:
    """Everything the gateway sends until it closes the connection; None if it is still open at `deadline`."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, OSError):
            return data
        if not chunk:
            return data
        data += chunk
    return None


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def _listener_stat(gw: GatewayProcess, suffix: str) -> int:
    stats = gw.admin("/stats?format=json").json()["stats"]
    return sum(
        int(s.get("value", 0))
        for s in stats
        if s.get("name", "").startswith("listener.127.0.0.1_") and s["name"].endswith(suffix)
    )


def test_slowloris_headers_are_cut_off(gateway: GatewayProcess) -> None:
    """15 clients each sending a header line every 0.5 s never finish their headers: all are closed."""
    conns = [_connect(gateway) for _ in range(15)]
    try:
        for s in conns:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        replies: dict[int, bytes] = {}
        deadline = time.monotonic() + DEADLINE
        i = 0
        while len(replies) < len(conns) and time.monotonic() < deadline:
            for n, s in enumerate(conns):
                if n in replies:
                    continue
                try:
                    s.sendall(f"X-Slow-{i}: y\r\n".encode())
                except OSError:
                    replies[n] = b""
                    continue
                ready, _, _ = select.select([s], [], [], 0)
                if ready:
                    replies[n] = _read_until_closed(s, time.monotonic() + 5) or b""
            i += 1
            time.sleep(0.5)
        assert len(replies) == len(conns), f"{len(conns) - len(replies)} slow clients still connected"
        statuses = {_status(r) for r in replies.values()}
        assert statuses <= {408, 0}, statuses  # 408 when the reply got out before the close
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_unfinished_body_gets_408(gateway: GatewayProcess, fake: FakeProviderThread, framing: str) -> None:
    """A body that never ends (no final chunk; fewer bytes than Content-Length) is answered, not held."""
    fake.clear()
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 500_000}]}).encode()
    part = body[: len(body) // 2]
    if framing == "chunked":
        head = b"Transfer-Encoding: chunked\r\n"
        sent = f"{len(part):x}\r\n".encode() + part + b"\r\n"  # and never the 0-length chunk
    else:
        head = f"Content-Length: {len(body)}\r\n".encode()
        sent = part
    s = _connect(gateway)
    try:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head + b"\r\n"
        )
        s.sendall(sent)
        reply = _read_until_closed(s, time.monotonic() + DEADLINE)
    finally:
        s.close()
    assert reply is not None, "the gateway kept waiting for the rest of the body"
    assert _status(reply) == 408, reply[:300]
    assert fake.requests == []  # nothing half-received went upstream


def test_body_over_the_limit_is_refused_before_it_is_all_sent(gateway: GatewayProcess) -> None:
    """A client announcing 32 MiB gets 413 after about --max-body-bytes, long before it sent everything."""
    total = 32 * 1024 * 1024
    s = _connect(gateway)
    sent = 0
    reply = b""
    try:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {total}\r\n\r\n".encode()
        )
        s.setblocking(False)
        chunk = b"x" * 65536
        deadline = time.monotonic() + DEADLINE
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s], [], 0.2)
            if readable:
                reply = _read_until_closed(s, time.monotonic() + 5) or b""
                break
            if writable:
                try:
                    sent += s.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    break
        if not reply:
            s.setblocking(True)
            reply = _read_until_closed(s, time.monotonic() + 5) or b""
    finally:
        s.close()
    assert _status(reply) == 413, reply[:300]
    assert sent < total // 2, f"the gateway read {sent} bytes before refusing"


def test_idle_connections_are_closed(gateway: GatewayProcess) -> None:
    """A connection that never sends a byte, and one idle after its request, are both closed."""
    silent = _connect(gateway)
    used = _connect(gateway)
    try:
        used.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        deadline = time.monotonic() + DEADLINE
        while b"\r\n\r\n" not in first and time.monotonic() < deadline:
            ready, _, _ = select.select([used], [], [], 0.2)
            if ready:
                first += used.recv(65536)
        assert _status(first) == 200, first[:300]
        # Now neither sends anything: the gateway must hang up on both.
        assert _read_until_closed(silent, time.monotonic() + DEADLINE) is not None
        assert _read_until_closed(used, time.monotonic() + DEADLINE) is not None
    finally:
        silent.close()
        used.close()


def test_long_streamed_response_is_not_cut_by_the_request_timeout(
    gateway: GatewayProcess, fake: FakeProviderThread
) -> None:
    """--request-timeout bounds receiving the request, never a response that streams for longer."""
    fake.set_behaviour(chunks=10, chunk_interval_ms=600)  # ~6 s of stream, twice REQUEST_TIMEOUT
    try:
        started = time.monotonic()
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "long"}]},
            timeout=DEADLINE,
        ) as resp:
            assert resp.status_code == 200
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert time.monotonic() - started > REQUEST_TIMEOUT  # it really outlived the request timeout
    finally:
        fake.reset_behaviour()


def test_limits_reach_envoy(gateway: GatewayProcess) -> None:
    dump = json.loads(gateway.config_dump())
    [listeners] = [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")]
    [lst] = [d["active_state"]["listener"] for d in listeners["dynamic_listeners"]]
    assert lst["per_connection_buffer_limit_bytes"] == CONNECTION_BUFFER
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["request_headers_timeout"] == f"{HEADERS_TIMEOUT}s"
    assert hcm["request_timeout"] == f"{REQUEST_TIMEOUT}s"
    assert hcm["common_http_protocol_options"]["idle_timeout"] == f"{IDLE_TIMEOUT}s"
    assert int(hcm["http2_protocol_options"]["initial_stream_window_size"]) <= 1024 * 1024
    [routes] = [c for c in dump["configs"] if c["@type"].endswith(".RoutesConfigDump")]
    ai_routes = [
        r
        for rc in routes["dynamic_route_configs"]
        for vh in rc["route_config"]["virtual_hosts"]
        for r in vh["routes"]
        if "route" in r
    ]
    assert ai_routes and all(int(r["request_body_buffer_limit"]) == MAX_BODY for r in ai_routes)


def test_connection_limit(fake: FakeProviderThread) -> None:
    """Past --max-connections a new connection is closed at once; the admin interface still answers."""
    limit = 8
    gw = _start(fake, "--max-connections", str(limit))
    held: list[socket.socket] = []
    try:
        held = [_connect(gw) for _ in range(limit)]
        wait_until(lambda: _listener_stat(gw, ".downstream_cx_active") >= limit, what="Envoy to accept them all")
        extra = _connect(gw)  # the kernel completes the handshake; Envoy closes it
        try:
            with contextlib.suppress(OSError):
                extra.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_until_closed(extra, time.monotonic() + DEADLINE) == b""  # closed without an answer
        finally:
            extra.close()
        assert _listener_stat(gw, ".downstream_global_cx_overflow") >= 1
        assert gw.admin("/ready").text.strip() == "LIVE"  # the supervisor's readiness check is exempt
        for s in held:
            s.close()
        held = []
        wait_until(
            lambda: _try_get(gw) == 200, timeout=DEADLINE, what="connections to be accepted again below the limit"
        )
    finally:
        for s in held:
            s.close()
        assert gw.stop() == 0
        gw.cleanup()


def _try_get(gw: GatewayProcess) -> int:
    try:
        return httpx.get(gw.url + "/v1/models", timeout=5).status_code
    except httpx.HTTPError:
        return 0
