"""Prometheus collectors of one hub, served at `GET /metrics`.

Each hub owns its registry, so two hubs in one process (tests, embedding)
never share counters. Gauges read live state through callbacks, which keeps
them exact at every scrape without bookkeeping on the hot path. Counters on
the fan-out path are bumped once per publish with the recipient count, never
once per recipient.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from hubbub._version import __version__
from hubbub.protocol.codes import CloseCode, ErrorCode

CONTENT_TYPE = CONTENT_TYPE_LATEST
REJECT_REASONS = (
    "origin",
    "host",
    "capacity",
    "per_ip",
    "fd_limit",
    "tls",
    "tls_capacity",
    "tls_per_ip",
    "tls_evicted",
)
"""Why `hubbub_handshakes_rejected_total` refused a connection: a foreign `Origin` or `Host`
(403), `--max-connections` (503), `--max-connections-per-ip` (429), no file descriptor (503),
a TLS handshake that failed (closed without an answer), `--max-tls-handshakes` or
`--max-tls-handshakes-per-ip` (closed at once, without an answer)."""


class HotCounter:
    """A counter for the per-message path: a plain int, no lock (one event loop writes it).

    prometheus-client's `Counter.inc` takes a mutex on every call; at a million
    deliveries a second that shows up in the profile. These are read at scrape
    time by `_HotCollector`.
    """

    __slots__ = ("documentation", "name", "value")

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class _HotCollector(Collector):
    def __init__(self, counters: list[HotCounter]) -> None:
        self._counters = counters

    def collect(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(c.name, c.documentation, value=c.value) for c in self._counters]


class _ProcessCollector(Collector):
    """The process' resident memory, CPU time, start time and file limit, under the usual
    `process_*` names, read from `/proc/self` at scrape time (Linux; nothing elsewhere).

    Not prometheus-client's `ProcessCollector`: it also counts open files by listing
    `/proc/self/fd`, which took 50 ms of the event loop per scrape with 10,000 sockets open
    (measured on the project's 2-core VM). `hubbub_sockets` counts the clients' descriptors instead.
    """

    def __init__(self) -> None:
        self._ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._page = resource.getpagesize()
        self._boot = 0.0
        try:
            with open("/proc/stat", "rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        self._boot = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> Iterable[Metric]:
        if not self._boot:
            return []
        try:
            with open("/proc/self/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[-1].split()
            limit = 0.0
            with open("/proc/self/limits", "rb") as limits:
                for line in limits:
                    if line.startswith(b"Max open files"):
                        limit = float(line.split()[3])
        except (OSError, IndexError, ValueError):
            return []
        cpu = (float(fields[11]) + float(fields[12])) / self._ticks
        return [
            GaugeMetricFamily(
                "process_resident_memory_bytes", "Resident memory size in bytes.", float(fields[21]) * self._page
            ),
            GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])),
            CounterMetricFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu),
            GaugeMetricFamily(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                float(fields[19]) / self._ticks + self._boot,
            ),
            GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.", limit),
        ]


class Metrics:
    """The collectors named in the README, bound to one registry."""

    def __init__(
        self,
        connections: Callable[[], int],
        rooms: Callable[[], int],
        broker_healthy: Callable[[], bool] = lambda: True,
        node: str = "",
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_ProcessCollector())
        info = Gauge(
            "hubbub_node_info",
            "Always 1; its labels name this node (--node-id) and hubbub's version, to join per-node panels on.",
            ["node", "version"],
            registry=r,
        )
        info.labels(node, __version__).set(1)
        self.broker_healthy = Gauge(
            "hubbub_broker_healthy",
            "1 while the broker (and its store) answers, 0 while it does not: /healthz answers 503 then.",
            registry=r,
        )
        self.broker_healthy.set_function(lambda: float(broker_healthy()))
        self.max_connections = Gauge(
            "hubbub_max_connections",
            "The cap on hubbub_sockets (--max-connections, or the file-descriptor limit less a reserve); past"
            " it a new socket gets 503. 0 until the listener starts.",
            registry=r,
        )
        self.connections = Gauge("hubbub_connections", "Open WebSocket connections.", registry=r)
        self.connections.set_function(lambda: float(connections()))
        self.rooms = Gauge("hubbub_rooms", "Rooms with at least one local member.", registry=r)
        self.rooms.set_function(lambda: float(rooms()))
        self.received = HotCounter("hubbub_messages_received", "Client events received.")
        self.published = HotCounter("hubbub_messages_published", "Messages published to rooms by this node.")
        self.delivered = HotCounter("hubbub_messages_delivered", "Messages queued to local recipients by fan-out.")
        r.register(_HotCollector([self.received, self.published, self.delivered]))
        self.slow_dropped = Counter(
            "hubbub_slow_consumers_dropped",
            "Connections dropped because their outbox overflowed.",
            registry=r,
        )
        self.errors = Counter("hubbub_errors", "Error events sent to clients, by code.", ["code"], registry=r)
        self.closes = Counter("hubbub_closes", "Connections ended, by close code.", ["code"], registry=r)
        for code in ErrorCode:
            self.errors.labels(code.value)
        for close in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.ABNORMAL_CLOSURE):
            self.closes.labels(str(int(close)))
        self.sockets = Gauge(
            "hubbub_sockets", "Accepted TCP sockets open: before the handshake, HTTP, and WebSocket.", registry=r
        )
        self.handshakes_rejected = Counter(
            "hubbub_handshakes_rejected",
            "Connections refused before the WebSocket upgrade, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.handshakes_rejected.labels(reason)
        self.accept_errors = Counter(
            "hubbub_accept_errors", "accept() failures on a listening socket, by errno name.", ["errno"], registry=r
        )
        for name in ("EMFILE", "ENFILE"):
            self.accept_errors.labels(name)
        self.tls_handshakes = Gauge("hubbub_tls_handshakes", "TLS handshakes in progress.", registry=r)
        self.heap_trims = Counter(
            "hubbub_heap_trims",
            "Free heap memory handed back to the system after a wave of sockets closed.",
            registry=r,
        )

    def watch_sockets(self, count: Callable[[], int]) -> None:
        """Read `hubbub_sockets` from `count` at each scrape (the listener's own tally)."""
        self.sockets.set_function(lambda: float(count()))

    def watch_max_connections(self, cap: Callable[[], int]) -> None:
        """Read `hubbub_max_connections` from `cap` at each scrape (the listener's resolved cap)."""
        self.max_connections.set_function(lambda: float(cap()))

    def watch_tls_handshakes(self, count: Callable[[], int]) -> None:
        """Read `hubbub_tls_handshakes` from `count` at each scrape (the listener's own tally)."""
        self.tls_handshakes.set_function(lambda: float(count()))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
