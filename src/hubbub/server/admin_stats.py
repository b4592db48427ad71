"""What the admin dashboard shows of the cluster: each node's numbers, sampled once a second, off the hot path.

`AdminStats.run` (one task per node, only with `--admin-password`) reads, once a `SAMPLE_PERIOD`, the
counters the node keeps anyway (`/metrics`: messages received and delivered, slow consumers
dropped, `rate_limited` errors, the webhook queue) and its connections, rooms, uptime and memory;
turns the counters into rates; records the result in presence for `RECORD_TTL` seconds (one small
write a second: `Presence.report_stats`); reads the other nodes' records back (one read a second);
and keeps the cluster's totals in a ring of `SERIES_LENGTH` samples. The dashboard's requests are
answered from what the last sample encoded: ten dashboards polling every second cost the node ten
copies of the same bytes, and nothing on the per-recipient path. docs/howto/admin.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections import deque
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry

from hubbub.backends.broker import BrokerUnavailable
from hubbub.core.hub import Hub

__all__ = ["RECORD_TTL", "SAMPLE_PERIOD", "SERIES_LENGTH", "AdminStats", "NodeStats", "rss_bytes"]

log = logging.getLogger("hubbub.server.admin_stats")

SAMPLE_PERIOD = 1.0
"""Seconds between two samples (and two records in presence)."""
RECORD_TTL = 10.0
"""Seconds a node's record lives: a node silent that long leaves the dashboard."""
SERIES_LENGTH = 300
"""Samples of the cluster's totals kept for a dashboard that opens: five minutes."""

_SAMPLES = {
    "hubbub_slow_consumers_dropped_total": "slow_dropped",
    "hubbub_webhooks_queued": "webhook_backlog",
}


class NodeStats(msgspec.Struct, frozen=True, omit_defaults=False):
    """One node's numbers at one sample, as it records them in presence (compact JSON)."""

    node: str
    at: float
    """When sampled (Unix seconds)."""
    started: float
    """When the node started (Unix seconds): its uptime is `at - started`."""
    rss: int
    """Resident memory, bytes."""
    connections: int
    rooms: int
    received: int
    """Client events received since start (`hubbub_messages_received_total`)."""
    delivered: int
    """Messages queued to local recipients since start (`hubbub_messages_delivered_total`)."""
    slow_dropped: int
    rate_limited: int
    """`rate_limited` errors sent to clients since start."""
    webhook_backlog: int
    """Webhook events waiting or in flight now."""
    in_rate: float = 0.0
    """Client events received a second, over the last sample."""
    out_rate: float = 0.0
    """Deliveries a second, over the last sample."""
    slow_rate: float = 0.0
    limited_rate: float = 0.0


_decode_stats = msgspec.json.Decoder(NodeStats)


def rss_bytes() -> int:
    """This process's resident memory: `/proc/self/statm` on Linux, else its peak (`ru_maxrss`)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _read_samples(registry: CollectorRegistry) -> dict[str, float]:
    """The few samples `_SAMPLES` names, and `rate_limited` errors, in one pass over the registry."""
    found: dict[str, float] = {"slow_dropped": 0.0, "webhook_backlog": 0.0, "rate_limited": 0.0}
    for family in registry.collect():
        for sample in family.samples:
            name = _SAMPLES.get(sample.name)
            if name is not None:
                found[name] = sample.value
            elif sample.name == "hubbub_errors_total" and sample.labels.get("code") == "rate_limited":
                found["rate_limited"] = sample.value
    return found


class AdminStats:
    """The sampler and what it last found (module docstring); `run` is its one task."""

    def __init__(self, hub: Hub, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self._clock = clock
        self.started = clock()
        self.local: NodeStats | None = None
        """This node's last sample."""
        self.others: dict[str, NodeStats] = {}
        """The other nodes' last records, as read after the last sample."""
        self.series: deque[tuple[float, ...]] = deque(maxlen=SERIES_LENGTH)
        """The cluster's totals, one tuple a sample: `(at, connections, in/s, out/s, slow dropped/s,
        rate-limited/s, webhook backlog)`."""
        self.encoded = b'{"nodes":[],"totals":{}}'
        """The answer of `GET /admin/api/stats`, made once a sample."""
        self.samples = 0

    def sample(self) -> NodeStats:
        """This node's numbers now, with rates against the previous sample."""
        hub = self.hub
        metrics = hub.metrics
        found = _read_samples(metrics.registry)
        now = self._clock()
        stats = NodeStats(
            node=hub.node_id,
            at=now,
            started=self.started,
            rss=rss_bytes(),
            connections=len(hub.connections),
            rooms=len(hub.room_table.members),
            received=metrics.received.value,
            delivered=metrics.delivered.value,
            slow_dropped=int(found["slow_dropped"]),
            rate_limited=int(found["rate_limited"]),
            webhook_backlog=int(found["webhook_backlog"]),
        )
        last = self.local
        if last is not None and now > last.at:
            span = now - last.at
            stats = msgspec.structs.replace(
                stats,
                in_rate=(stats.received - last.received) / span,
                out_rate=(stats.delivered - last.delivered) / span,
                slow_rate=(stats.slow_dropped - last.slow_dropped) / span,
                limited_rate=(stats.rate_limited - last.rate_limited) / span,
            )
        self.local = stats
        return stats

    async def tick(self) -> None:
        """One sample: this node's numbers, recorded; the others', read; the totals, kept and encoded."""
        stats = self.sample()
        presence = self.hub.presence
        with contextlib.suppress(BrokerUnavailable):  # the dashboard shows this node alone meanwhile
            await presence.report_stats(stats.node, msgspec.json.encode(stats), RECORD_TTL)
            others: dict[str, NodeStats] = {}
            for node, raw in (await presence.node_stats()).items():
                if node == stats.node:
                    continue
                try:
                    others[node] = _decode_stats.decode(raw)
                except msgspec.DecodeError:  # a node of another version: left out
                    continue
            self.others = others
        nodes = [stats, *sorted(self.others.values(), key=lambda n: n.node)]
        point = (
            stats.at,
            float(sum(n.connections for n in nodes)),
            sum(n.in_rate for n in nodes),
            sum(n.out_rate for n in nodes),
            sum(n.slow_rate for n in nodes),
            sum(n.limited_rate for n in nodes),
            float(sum(n.webhook_backlog for n in nodes)),
        )
        self.series.append(point)
        self.samples += 1
        totals = {
            "nodes": len(nodes),
            "connections": int(point[1]),
            "rooms_local": sum(n.rooms for n in nodes),
            "rss": sum(n.rss for n in nodes),
            "in_rate": point[2],
            "out_rate": point[3],
            "slow_dropped": sum(n.slow_dropped for n in nodes),
            "rate_limited": sum(n.rate_limited for n in nodes),
            "webhook_backlog": int(point[6]),
        }
        self.encoded = msgspec.json.encode(
            {"node": stats.node, "at": stats.at, "nodes": nodes, "totals": totals, "point": point}
        )

    def encoded_series(self) -> bytes:
        """The ring of totals, for a dashboard that opens (`GET /admin/api/series`)."""
        return msgspec.json.encode({"series": list(self.series)})

    async def run(self) -> None:
        """Sample every `SAMPLE_PERIOD` until cancelled; a sample that fails is logged (once a minute at
        most) and the next one tried: the dashboard must not freeze for one bad second."""
        logged = -60.0
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception as exc:  # not CancelledError: that ends the loop
                if started - logged >= 60.0:
                    logged = started
                    log.warning("admin.sample_failed", extra={"error": repr(exc)[:200]})
            await asyncio.sleep(max(0.05, SAMPLE_PERIOD - (time.monotonic() - started)))
