"""What one client may hold of a gateway: timeouts, connections, buffers (all enforced by Envoy).

A slow or greedy client must not be able to keep sockets and memory forever:
headers that trickle in, a body that never ends, connections that stay open
idle, or more connections than the process has file descriptors for. Each
limit maps to one Envoy setting (HCM timeouts, the overload manager's global
connection limit, listener buffer limits); `llmgw run` exposes them as options
and the defaults follow Envoy's edge best practices where they exist.
"""

from __future__ import annotations

from dataclasses import dataclass

# HTTP/2 flow control windows of downstream connections: how much a client may send ahead on a
# stream and on a connection before Envoy consumed it (Envoy's defaults are 256 MiB each).
H2_STREAM_WINDOW = 1024 * 1024
H2_CONNECTION_WINDOW = 4 * 1024 * 1024
H2_MAX_CONCURRENT_STREAMS = 100


@dataclass(frozen=True)
class Limits:
    request_headers_timeout_s: float = 10.0
    """From the first byte of a request's headers to the last (slowloris); 408 then close."""
    request_timeout_s: float = 60.0
    """From the start of a request until its body was received and processed (a body that never
    ends). Disarmed once the request went upstream or the response started, so it never cuts a
    long (streamed) response."""
    idle_timeout_s: float = 300.0
    """A downstream connection with no request in flight is closed after this long."""
    stream_idle_timeout_s: float = 300.0
    """A request with no activity in either direction for this long ends (408 or reset)."""
    max_connections: int = 10000
    """Downstream connections over all listeners (Envoy's overload manager); more are closed at accept."""
    connection_buffer_bytes: int = 32 * 1024
    """What Envoy reads ahead from one downstream connection before it applies back pressure. AI
    routes buffer up to the max body size for the extproc regardless (route request_body_buffer_limit)."""

    def validate(self) -> list[str]:
        problems = []
        for name in ("request_headers_timeout_s", "request_timeout_s", "idle_timeout_s", "stream_idle_timeout_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name.removesuffix('_s').replace('_', '-')} must be >= 0 (0 disables it)")
        if self.max_connections < 1:
            problems.append("max-connections must be >= 1")
        if self.connection_buffer_bytes < 1024:
            problems.append("connection-buffer-bytes must be >= 1024")
        return problems
