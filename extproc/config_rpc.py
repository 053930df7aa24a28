"""The worker's gRPC client to the control plane's config service (`wire.CONFIG_SERVICE`), on grpclib.

Why grpclib and not grpc.aio: the worker's ext_proc server is grpclib
(extproc/grpc_service.py), and this client was the last thing that made a worker
load grpcio, whose native library costs each worker ~20 MiB of RSS and starts gRPC
core's threads. The messages are bytes (JSON) both ways, so the codec passes them through.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from grpclib.client import Channel, UnaryStreamMethod, UnaryUnaryMethod
from grpclib.encoding.base import CodecBase

from extproc import wire


class _Bytes(CodecBase):
    """The config channel's messages are already bytes: no protobuf on this service."""

    __content_subtype__ = "proto"  # what gRPC servers expect; the bytes are opaque to them

    def encode(self, message: object, message_type: object) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: object) -> bytes:
        return data


def tls_context(tls_dir: str) -> ssl.SSLContext:
    """Mutual TLS to the controller: trust its CA, present this Gateway's certificate.

    Read per connection, so a reissued Secret is used once Kubernetes updates the mounted files.
    The server's certificate must name the host of the target (as grpc.aio checked it).
    """
    base = Path(tls_dir)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=(base / wire.CONFIG_TLS_CA_FILE).read_text())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(base / wire.CONFIG_TLS_CERT_FILE, base / wire.CONFIG_TLS_KEY_FILE)
    context.set_alpn_protocols(["h2"])
    return context


def config_channel(target: str, tls_dir: str | None) -> Channel:
    """A channel to `target` (`unix:PATH` or `HOST:PORT`): plaintext, or mutual TLS with `tls_dir`'s files."""
    context = tls_context(tls_dir) if tls_dir is not None else None
    if target.startswith("unix:"):
        return Channel(path=target.removeprefix("unix:"), codec=_Bytes(), ssl=context)
    host, _, port = target.rpartition(":")
    return Channel(host.strip("[]"), int(port), codec=_Bytes(), ssl=context)


async def watch(channel: Channel, worker: str) -> AsyncIterator[bytes]:
    """The configs the control plane sends this worker, newest last, until the stream ends."""
    method = UnaryStreamMethod(channel, wire.CONFIG_WATCH_METHOD, bytes, bytes)
    async with method.open() as stream:
        await stream.send_message(worker.encode(), end=True)
        async for raw in stream:
            yield raw


async def ask(channel: Channel, method_name: str, question: bytes, *, timeout: float) -> bytes:
    """One question on the config service (a price lookup), one answer."""
    method = UnaryUnaryMethod(channel, method_name, bytes, bytes)
    return await method(question, timeout=timeout)
