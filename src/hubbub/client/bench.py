"""`hubbub bench`: a fan-out load generator in Python, spread over processes.

It plays wsload's game in the events dialect: clients join rooms round-robin,
each room's first member publishes messages carrying `ts=<unix ns>;`, keeps at
most `window` of its own messages in flight (its own echo paces it), and every
member measures the latency of each message it receives. The clients live in
several worker processes (picows clients on uvloop), so the generator is not
the bottleneck as easily; the parent process coordinates the phases, draws the
progress bar and prints the table.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any
from urllib.parse import urlsplit
from urllib.request import urlopen

from hubbub.client.errors import HandshakeRefused, shown
from hubbub.client.tls import client_context
from hubbub.protocol.redaction import redact_secrets

SCENARIOS: dict[str, dict[str, int]] = {
    "F1": {"clients": 1000, "rooms": 1, "msgs": 3000, "window": 32, "size": 64},
    "F2": {"clients": 5000, "rooms": 500, "msgs": 200, "window": 8, "size": 64},
    "F3": {"clients": 10000, "rooms": 100, "msgs": 1, "window": 1, "size": 64},
    "F4": {"clients": 1000, "rooms": 1, "msgs": 40000, "window": 32, "size": 64, "stalled": 1},
    "smoke": {"clients": 50, "rooms": 5, "msgs": 100, "window": 8, "size": 64},
}
"""The benchmark scenarios and a quick one. F4 is F1 plus a member that stops reading, long
enough for its backlog to pass what the kernel holds for it (up to 4 MiB on Linux) and
the outbox bound, so that the server really drops it while the others are measured."""

SCENARIO_HELP: dict[str, str] = {
    "F1": "1 room x 1,000 clients, 3,000 messages from one publisher (32 in flight): fan-out to a crowd,"
    " the deliveries per second and the latency of one big room",
    "F2": "500 rooms x 10 clients, 200 messages per room: many small rooms at once, the throughput"
    " across rooms (each room's publisher keeps 8 in flight)",
    "F3": "100 rooms x 100 clients (10,000), 1 message per room: connection scale, the time to connect and,"
    " with --server-pid, the server's memory per connection",
    "F4": "F1 with 40,000 messages and one member that stops reading: the server must drop it (slow"
    " consumers dropped: 1) while the others keep everything and their latency",
    "smoke": "5 rooms x 10 clients, 100 messages per room: a few seconds' check that everything arrives",
}
"""What each scenario runs and what it shows, for `hubbub bench --help`."""

RATE_LIMITED = (
    "the server answered rate_limited: it limits each client to --rate-limit events a second"
    " (20 by default), and a publisher sends thousands; start it with --rate-limit 0 to bench it"
)
"""Why a run stops early when the server rate-limits the publishers: waiting out the timeout
would only report losses without their cause."""

REFUSAL_HINTS = {
    429: "; every bench client comes from this address: start the server with a higher --max-connections-per-ip",
    503: "; if the server is full, start it with a higher --max-connections",
}
"""What to change when a handshake is refused for a cap on connections (the bench opens many)."""

MEASURES = (
    "Every scenario reports what was delivered and lost, deliveries per second, and the latency from"
    " publish to receipt (p50/p90/p99/max, measured by every member); with --server-pid, the server's CPU"
    " per delivery and its RSS growth per connection; from hubbub's /metrics, the slow consumers it"
    " dropped. A figure that cannot be measured (no message arrived, the server's RSS shrank while the"
    " clients connected) is printed as n/a with the reason, never as a negative number."
)

SAMPLES_PER_WORKER = 200_000


@dataclass
class Plan:
    """One benchmark run, as the workers need it."""

    url: str
    clients: int = 1000
    rooms: int = 1
    msgs: int = 3000
    window: int = 32
    size: int = 64
    stalled: int = 0
    timeout: float = 120.0
    room_prefix: str = "bench"
    ca: str | None = None
    """For `wss://` URLs: a PEM file to trust (e.g. the server's self-signed certificate)."""

    @property
    def urls(self) -> list[str]:
        """`url` may list several nodes, comma-separated: clients are spread over them."""
        return [u for u in self.url.split(",") if u]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context when a URL is `wss://` (trusting `ca` when given), else None."""
        if self.ca is None and not any(urlsplit(u).scheme == "wss" for u in self.urls):
            return None
        return client_context(self.ca)

    @property
    def expected(self) -> int:
        members = [0] * self.rooms
        for i in range(self.clients):
            members[i % self.rooms] += 1
        return sum(m * self.msgs for m in members if m)


@dataclass
class Result:
    """What a run measured; `table()` renders it for people, `asdict` for `--json`."""

    scenario: str
    clients: int
    rooms: int
    expected: int
    received: int
    seconds: float
    deliveries_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    """Latency percentiles in ms; None when no message arrived (`unmeasured` says so)."""
    connect_s: float
    server_cpu_us_per_delivery: float | None = None
    server_rss_bytes_per_conn: float | None = None
    slow_consumers_dropped: int | None = None
    """How many clients the server dropped for not keeping up during the run, when it says (hubbub's /metrics)."""
    extra: dict[str, Any] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)
    """Figures asked for that could not be measured, by field name: why (shown as `n/a (why)`)."""

    def vetted(self, asked_server: bool) -> Result:
        """This result with every figure that means nothing replaced by None and a reason in
        `unmeasured`: a negative or zero RSS growth (the server freed more than the connections
        took: it was busy, or had just shed a load), CPU per delivery with nothing delivered, a
        drop counter that went back (the server restarted), latencies without samples."""
        why = dict(self.unmeasured)
        if self.server_rss_bytes_per_conn is not None and self.server_rss_bytes_per_conn <= 0:
            self.server_rss_bytes_per_conn = None
            why["server_rss_bytes_per_conn"] = "server busy: its RSS did not grow while the clients connected"
        if self.server_cpu_us_per_delivery is not None and self.server_cpu_us_per_delivery <= 0:
            self.server_cpu_us_per_delivery = None
            why["server_cpu_us_per_delivery"] = "no CPU time was read"
        elif asked_server and self.server_cpu_us_per_delivery is None:
            why["server_cpu_us_per_delivery"] = "nothing was delivered"
        if self.slow_consumers_dropped is not None and self.slow_consumers_dropped < 0:
            self.slow_consumers_dropped = None
            why["slow_consumers_dropped"] = "the server's counter went back: did it restart?"
        if None in (self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms):
            self.p50_ms = self.p90_ms = self.p99_ms = self.max_ms = None
            why["p50_ms"] = "no message arrived"
        self.unmeasured = why
        return self

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def table(self) -> str:
        rows = [
            ("scenario", self.scenario),
            ("clients / rooms", f"{self.clients} / {self.rooms}"),
            ("delivered", f"{self.received:,} of {self.expected:,} ({self.lost:,} lost)"),
            ("time", f"{self.seconds:.2f} s (connect {self.connect_s:.2f} s)"),
            ("deliveries/s", f"{self.deliveries_per_s:,.0f}"),
        ]
        latencies = (self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms)
        if None in latencies:
            rows.append(("latency p50/p90/p99/max", f"n/a ({self.unmeasured.get('p50_ms', 'not measured')})"))
        else:
            rows.append(("latency p50/p90/p99/max", " / ".join(f"{v:.1f}" for v in latencies) + " ms"))
        for key, label, fmt in (
            ("server_cpu_us_per_delivery", "server CPU per delivery", "{:.3f} us"),
            ("server_rss_bytes_per_conn", "server RSS per connection", "{:,.0f} bytes"),
            ("slow_consumers_dropped", "slow consumers dropped", "{}"),
        ):
            value = getattr(self, key)
            if value is not None:
                rows.append((label, fmt.format(value)))
            elif key in self.unmeasured:
                rows.append((label, f"n/a ({self.unmeasured[key]})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def percentile(sorted_values: list[int], p: float) -> float | None:
    """The p-quantile of nanosecond samples, in milliseconds (None when there are none)."""
    if not sorted_values:
        return None
    return sorted_values[int(p * (len(sorted_values) - 1))] / 1e6


# ---- the worker process --------------------------------------------------------


def refusal(exc: Any) -> str:
    """A refused handshake (picows' `WSHandshakeError`) in the client's words, with what to change
    on the server for the caps on connections (429, 503)."""
    from hubbub.client.dial import refusal_body

    status = int(exc.response.status) if exc.response is not None else 0
    if not status:
        return redact_secrets(str(exc))
    return f"{HandshakeRefused(status, refusal_body(exc))}{REFUSAL_HINTS.get(status, '')}"


def _worker(plan: Plan, indexes: list[int], pipe: Pipe, progress: Any, halt: Any) -> None:
    import socket

    import uvloop
    from picows import WSError, WSHandshakeError

    try:
        uvloop.run(_worker_main(plan, indexes, pipe, progress, halt))
    except WSHandshakeError as exc:  # report it to the parent, which prints one line
        pipe.send(f"error: {refusal(exc)}")
    except socket.gaierror as exc:
        pipe.send(f"error: the host name {urlsplit(plan.urls[0]).hostname} was not found ({exc.strerror or exc})")
    except (OSError, WSError) as exc:
        pipe.send(f"error: {exc}")


async def _worker_main(plan: Plan, indexes: list[int], pipe: Pipe, progress: Any, halt: Any) -> None:
    """Connect this worker's clients, then publish and count until everything arrived, the timeout,
    or a `rate_limited` answer here or in another worker (`halt`, shared): then nothing more can arrive."""
    from picows import WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()
    context = plan.ssl_context()
    samples: list[int] = []
    counts = [0]
    echoes: dict[int, asyncio.Queue[None]] = {}

    class Sub(WSListener):
        def __init__(self, room: int, publisher: bool) -> None:
            self.room = room
            self.publisher = publisher

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not WSMsgType.TEXT:
                return
            data = frame.get_payload_as_bytes()
            at = data.find(b"ts=")
            if at < 0:
                if b'"rate_limited"' in data:  # a publisher's message was refused: the run cannot complete
                    halt.value = 1
                return
            end = data.find(b";", at)
            if len(samples) < SAMPLES_PER_WORKER:
                samples.append(time.time_ns() - int(data[at + 3 : end]))
            counts[0] += 1
            if self.publisher:
                echoes[self.room].put_nowait(None)

    subs: list[tuple[Any, Sub]] = []
    for i in indexes:
        room = i % plan.rooms
        listener = Sub(room, publisher=i < plan.rooms)
        transport, _ = await ws_connect(
            lambda listener=listener: listener, plan.urls[i % len(plan.urls)], ssl_context=context
        )
        subs.append((transport, listener))
        if listener.publisher:
            echoes[room] = asyncio.Queue()
    for transport, listener in subs:
        join = {"type": "join_room", "payload": {"room": f"{plan.room_prefix}-{listener.room}"}}
        transport.send(WSMsgType.TEXT, json.dumps(join).encode())
    stalled = []
    if 0 in indexes:  # the worker with client 0 also holds the stalled members of F4
        for _ in range(plan.stalled):
            transport, _ = await ws_connect(WSListener, plan.urls[0], ssl_context=context)
            join = {"type": "join_room", "payload": {"room": f"{plan.room_prefix}-0"}}
            transport.send(WSMsgType.TEXT, json.dumps(join).encode())
            stalled.append(transport)
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)  # "go"
    for transport in stalled:
        transport.underlying_transport.pause_reading()

    async def publish(transport: Any, room: int) -> None:
        pad = "x" * max(0, plan.size - 40)
        name = f"{plan.room_prefix}-{room}"
        in_flight = 0
        for m in range(plan.msgs):
            while in_flight >= plan.window:
                await echoes[room].get()
                in_flight -= 1
            text = f"ts={time.time_ns()};seq={m};{pad}"
            event = {"type": "send_message", "payload": {"room": name, "message": text, "from": "bench"}}
            transport.send(WSMsgType.TEXT, json.dumps(event).encode())
            in_flight += 1

    publishers = [asyncio.create_task(publish(t, s.room)) for t, s in subs if s.publisher]
    mine = len(subs) * plan.msgs  # every member gets every message of its room
    deadline = loop.time() + plan.timeout
    while counts[0] < mine and loop.time() < deadline and not halt.value:
        progress.value = counts[0]
        await asyncio.sleep(0.05)
    progress.value = counts[0]
    for task in publishers:
        task.cancel()
    samples.sort()
    pipe.send((counts[0], samples[:: max(1, len(samples) // 20000)], bool(halt.value)))
    for transport, _ in subs:
        transport.disconnect()
    for transport in stalled:
        transport.disconnect()


# ---- the parent process --------------------------------------------------------


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` in nanoseconds, from the scheduler's own count
    (`se.sum_exec_runtime` in /proc/PID/task/*/sched, in ms with six decimals):
    /proc/PID/stat counts 10 ms ticks, as coarse as a short run's whole CPU time."""
    total = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/sched") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":")[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return int(total * 1e6)


def _dropped_so_far(urls: list[str], context: ssl.SSLContext | None = None) -> int | None:
    """`hubbub_slow_consumers_dropped_total` summed over the nodes, or None if a node does not say."""
    total = 0
    for url in urls:
        parts = urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        try:
            with urlopen(f"{scheme}://{parts.netloc}/metrics", timeout=2, context=context) as response:
                text = response.read().decode()
        except (OSError, ValueError):
            return None
        name = "hubbub_slow_consumers_dropped_total"
        values = [line.split()[1] for line in text.splitlines() if line.startswith(name)]
        if not values:
            return None
        total += int(float(values[0]))
    return total


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _bar(done: int, total: int, started: float) -> str:
    fraction = done / total if total else 1.0
    rate = done / max(time.monotonic() - started, 1e-9)
    filled = int(30 * fraction)
    return f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * fraction:5.1f}%  {rate:,.0f}/s "


def run(plan: Plan, scenario: str = "custom", procs: int = 0, server_pid: int = 0, progress: bool = True) -> Result:
    """Run `plan` with `procs` worker processes; return what was measured."""
    procs = procs or max(1, min(4, (os.cpu_count() or 2), plan.clients // 50 or 1))
    ctx = mp.get_context("spawn")
    shares = [list(range(w, plan.clients, procs)) for w in range(procs)]
    pipes, counters, workers = [], [], []
    halt = ctx.Value("b", 0, lock=False)  # set by a worker answered rate_limited: every worker stops waiting
    rss0 = _rss_bytes(server_pid) if server_pid else 0
    t0 = time.monotonic()
    for share in shares:
        parent, child = ctx.Pipe()
        counter = ctx.Value("q", 0, lock=False)
        proc = ctx.Process(target=_worker, args=(plan, share, child, counter, halt), daemon=True)
        proc.start()
        child.close()  # so that a worker that dies shows up as EOF here
        pipes.append(parent)
        counters.append(counter)
        workers.append(proc)
    for pipe in pipes:
        try:
            ready = pipe.recv()
        except EOFError:
            ready = None
        if ready != "ready":
            for proc in workers:
                proc.kill()
            detail = f" ({redact_secrets(ready[7:])})" if isinstance(ready, str) and ready.startswith("error: ") else ""
            raise ConnectionError(f"could not connect {plan.clients} clients to {shown(plan.url)}{detail}")
    connect_s = time.monotonic() - t0
    time.sleep(0.5 + plan.clients / 10000)  # let joins settle; joins are not acked
    rss_per_conn = (_rss_bytes(server_pid) - rss0) / plan.clients if server_pid else None
    cpu0 = _cpu_ns(server_pid) if server_pid else 0
    context = plan.ssl_context()
    dropped0 = _dropped_so_far(plan.urls, context)
    started = time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    expected = plan.expected
    while any(not p.poll() for p in pipes):
        if progress:
            print(_bar(sum(c.value for c in counters), expected, started), end="", file=sys.stderr, flush=True)
        time.sleep(0.1)
    seconds = time.monotonic() - started
    received, samples, limited = 0, [], False
    for pipe in pipes:
        count, part, halted = pipe.recv()
        received += count
        samples.extend(part)
        limited = limited or halted
    if progress:
        print(_bar(received, expected, started), file=sys.stderr)
    for proc in workers:
        proc.join(10)
    if limited:
        raise ConnectionError(RATE_LIMITED)
    samples.sort()
    dropped1 = _dropped_so_far(plan.urls, context) if dropped0 is not None else None
    cpu_us = (_cpu_ns(server_pid) - cpu0) / 1e3 / received if server_pid and received else None
    dropped = None if dropped0 is None or dropped1 is None else dropped1 - dropped0
    return Result(
        scenario=scenario,
        clients=plan.clients,
        rooms=plan.rooms,
        expected=expected,
        received=received,
        seconds=seconds,
        deliveries_per_s=received / seconds if seconds else 0.0,
        p50_ms=percentile(samples, 0.50),
        p90_ms=percentile(samples, 0.90),
        p99_ms=percentile(samples, 0.99),
        max_ms=percentile(samples, 1.0),
        connect_s=connect_s,
        server_cpu_us_per_delivery=cpu_us,
        server_rss_bytes_per_conn=rss_per_conn,
        slow_consumers_dropped=dropped,
        extra={"procs": procs, "window": plan.window, "size": plan.size, "msgs": plan.msgs, "stalled": plan.stalled},
    ).vetted(asked_server=bool(server_pid))


def to_json(result: Result) -> str:
    doc = asdict(result)
    doc["lost"] = result.lost
    return json.dumps(doc)
