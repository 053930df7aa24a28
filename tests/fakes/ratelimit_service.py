"""A rate-limit service speaking Envoy's own protocol (envoy.service.ratelimit.v3), for tests.

Keeps one counter per (domain, descriptor entries) with a limit per first
entry key, answers OVER_LIMIT once a counter would pass its limit, and
records every request (domain, descriptors, hits_addend) so a test can see
what Envoy sent, including the token hits it sends at stream end.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.harness import free_port


@dataclass
class Seen:
    domain: str
    descriptors: list[tuple[tuple[str, str], ...]]
    hits: list[int | None]  # per descriptor: its own hits_addend (None: the request's)


@dataclass
class FakeRateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    limits: dict[str, int] = field(default_factory=dict)  # first entry key -> hits allowed per window
    seen: list[Seen] = field(default_factory=list)
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    server: grpc.Server | None = None

    def ShouldRateLimit(self, request: rls_pb2.RateLimitRequest, context: object) -> rls_pb2.RateLimitResponse:
        descriptors = [tuple((e.key, e.value) for e in d.entries) for d in request.descriptors]
        own = [d.hits_addend.value if d.HasField("hits_addend") else None for d in request.descriptors]
        overall = rls_pb2.RateLimitResponse.OK
        statuses = []
        with self.lock:
            self.seen.append(Seen(request.domain, descriptors, own))
            for entries, mine in zip(descriptors, own, strict=True):
                hits = mine if mine is not None else request.hits_addend or 1
                limit = self.limits.get(entries[0][0]) if entries else None
                key = (request.domain, entries)
                if limit is None:
                    statuses.append(rls_pb2.RateLimitResponse.DescriptorStatus(code=rls_pb2.RateLimitResponse.OK))
                    continue
                used = self.counts.get(key, 0) + hits
                self.counts[key] = used
                code = rls_pb2.RateLimitResponse.OK if used <= limit else rls_pb2.RateLimitResponse.OVER_LIMIT
                if code == rls_pb2.RateLimitResponse.OVER_LIMIT:
                    overall = code
                statuses.append(
                    rls_pb2.RateLimitResponse.DescriptorStatus(
                        code=code,
                        current_limit=rls_pb2.RateLimitResponse.RateLimit(
                            requests_per_unit=limit, unit=rls_pb2.RateLimitResponse.RateLimit.MINUTE
                        ),
                        limit_remaining=max(0, limit - used),
                        duration_until_reset={"seconds": 42},
                    )
                )
        return rls_pb2.RateLimitResponse(overall_code=overall, statuses=statuses)

    def start(self) -> FakeRateLimitService:
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(5)
            self.server = None
