"""Control-plane health on `:15020/metrics`: what config is applied, and what was refused.

The supervisor's own process is not an extproc worker: its numbers come from
state it already keeps (the ADS server's acks and NACKs, the snapshot serial,
rejected reloads), read at scrape time by a custom collector, not from
multiprocess counter files. Exposed series:

- `llmgw_config_snapshot` the serial of the snapshot the control plane serves,
- `llmgw_config_applied_timestamp_seconds` when it was applied,
- `llmgw_config_rejected_total` configuration changes refused (the last good config stays),
- `llmgw_xds_acked{type}` 1 when Envoy acknowledged the served version of that resource type,
- `llmgw_xds_nacks_total{type}` versions Envoy rejected,
- `llmgw_xds_connected` ADS streams open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.xds.ads import AdsServer


@dataclass
class ConfigHealth:
    """The supervisor's config history: written where it applies or refuses a config."""

    snapshot: int = 0
    applied_at: float = 0.0
    rejected: int = 0

    def applied(self, *, serial: int) -> None:
        self.snapshot = serial
        self.applied_at = time.time()

    def refused(self) -> None:
        self.rejected += 1


def _short_type(type_url: str) -> str:
    """`type.googleapis.com/envoy.config.cluster.v3.Cluster` -> `Cluster` (a short, bounded label)."""
    return type_url.rsplit(".", 1)[-1]


class ControlPlaneCollector(Collector):
    """Reads `health` and the ADS servers' status at scrape time."""

    def __init__(self, *, health: ConfigHealth, servers: Callable[[], list[AdsServer]]) -> None:
        self.health = health
        self.servers = servers

    def collect(self) -> Iterator[Metric]:
        h = self.health
        yield GaugeMetricFamily("llmgw_config_snapshot", "Serial of the config snapshot being served", value=h.snapshot)
        yield GaugeMetricFamily(
            "llmgw_config_applied_timestamp_seconds", "When the served config was applied", value=h.applied_at
        )
        yield CounterMetricFamily(
            "llmgw_config_rejected", "Configuration changes refused (the last good config stays)", value=h.rejected
        )
        acked = GaugeMetricFamily(
            "llmgw_xds_acked", "1 when Envoy acknowledged the served version of the resource type", labels=["type"]
        )
        nacks = CounterMetricFamily("llmgw_xds_nacks", "Config versions Envoy rejected (NACK)", labels=["type"])
        connected = 0
        nack_counts: dict[str, int] = {}
        ack_state: dict[str, bool] = {}
        for server in self.servers():
            status = server.status
            connected += status.connected
            for nack in status.nacks:
                nack_counts[_short_type(nack.type_url)] = nack_counts.get(_short_type(nack.type_url), 0) + 1
            snap = server.snapshot
            if snap is None:
                continue
            for type_url, typed in snap.types.items():
                versions = [v.split("+")[0] for (_, t), v in status.acks.items() if t == type_url]
                ok = bool(versions) and all(v == typed.version for v in versions)
                key = _short_type(type_url)
                ack_state[key] = ack_state.get(key, True) and ok
        for key, ok in sorted(ack_state.items()):
            acked.add_metric([key], 1.0 if ok else 0.0)
        for key in sorted(set(nack_counts) | set(ack_state)):
            nacks.add_metric([key], nack_counts.get(key, 0))
        yield acked
        yield nacks
        yield GaugeMetricFamily("llmgw_xds_connected", "ADS streams open (Envoys connected)", value=connected)
