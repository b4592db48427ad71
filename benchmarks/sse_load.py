"""F1 read over Server-Sent Events beside F1 read over WebSocket, in one run against one server.

F1 is one room with 1,000 members and one publisher keeping 32 messages in flight (`hubbub bench
F1`). Here the members are 1,000 raw asyncio readers in this one process, all over SSE
(`GET /sse?rooms=...`) or all over WebSocket (picows), and the publisher is one WebSocket client
of the same room; each message carries its send time (`ts=<ns>;`), so every member measures its
latency. For each transport: deliveries per second, latency p50/p99/max, and with `--server-pid`
the server's CPU per delivery (its scheduler time, as `hubbub bench` reads it).

    taskset -c 1 hubbub serve --port 8765 --rate-limit 0 --log-level warning &
    taskset -c 0 python3 benchmarks/sse_load.py --port 8765 --server-pid $! --msgs 1000

The loader runs on one core: on a shared machine the figures are indicative, and the two
transports are compared under the same load generator, not against `hubbub bench`'s workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from hubbub.client.bench import _cpu_ns, percentile

_TS = b"ts="


@dataclass
class Figures:
    transport: str
    members: int
    msgs: int
    expected: int
    received: int
    seconds: float
    deliveries_per_s: float
    connect_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    server_cpu_us_per_delivery: float | None


class Counter:
    """What every member received, and a sample of latencies (ns)."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[int] = []
        self.target = 0
        self.done = asyncio.Event()

    def seen(self, data: bytes) -> None:
        """Count the messages in `data` (whole events or frames), sampling their latency."""
        now = time.time_ns()
        at = data.find(_TS)
        while at >= 0:
            end = data.find(b";", at)
            self.count += 1
            if self.count % 7 == 0:  # a sample is enough: 1,000 members x thousands of messages
                self.samples.append(now - int(data[at + 3 : end]))
            at = data.find(_TS, end)
        if self.target and self.count >= self.target:
            self.done.set()


class SseReader(asyncio.Protocol):
    """One member over SSE: the response head, then events; counts the complete ones."""

    def __init__(self, counter: Counter, ready: asyncio.Future[None]) -> None:
        self.counter = counter
        self.ready = ready
        self.buffer = b""
        self.started = False

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.buffer = data
            return
        self.buffer = data[cut + 2 :]
        whole = data[: cut + 2]
        if not self.started:
            if not whole.startswith(b"HTTP/1.1 200"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(whole[:200].decode(errors="replace")))
                return
            self.started = True
        if not self.ready.done() and b"event: hello" in whole:
            self.ready.set_result(None)
        self.counter.seen(whole)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before hello"))


async def open_sse(port: int, room: str, counter: Counter) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: SseReader(counter, ready), "127.0.0.1", port)
    transport.write(f"GET /sse?rooms={room} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await ready
    return transport


async def open_ws(port: int, room: str, counter: Counter, echo: asyncio.Queue[None] | None = None) -> Any:
    from picows import WSListener, WSMsgType, ws_connect

    joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Member(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not WSMsgType.TEXT:
                return
            data = frame.get_payload_as_bytes()
            if not joined.done() and b'"ack"' in data:
                joined.set_result(None)
                return
            if echo is None:
                counter.seen(data)
            elif _TS in data:
                echo.put_nowait(None)

    transport, _ = await ws_connect(Member, f"ws://127.0.0.1:{port}/ws")
    transport.send(WSMsgType.TEXT, json.dumps({"type": "join_room", "payload": {"room": room}, "id": 1}).encode())
    await joined
    return transport


async def run(transport: str, args: argparse.Namespace, room: str) -> Figures:
    from picows import WSMsgType

    counter = Counter()
    started = time.monotonic()
    members: list[Any] = []
    for _ in range(args.members):
        if transport == "sse":
            members.append(await open_sse(args.port, room, counter))
        else:
            members.append(await open_ws(args.port, room, counter))
    connect_s = time.monotonic() - started
    echo: asyncio.Queue[None] = asyncio.Queue()
    publisher = await open_ws(args.port, room, counter, echo)
    await asyncio.sleep(0.5)  # let presence settle
    counter.count = 0
    counter.samples.clear()
    expected = args.members * args.msgs
    counter.target = expected
    cpu0 = _cpu_ns(args.server_pid) if args.server_pid else 0
    t0 = time.monotonic()
    pad = "x" * max(0, args.size - 40)
    in_flight = 0
    for m in range(args.msgs):
        while in_flight >= args.window:
            await echo.get()
            in_flight -= 1
        event = {"type": "send_message", "payload": {"room": room, "message": f"ts={time.time_ns()};seq={m};{pad}"}}
        publisher.send(WSMsgType.TEXT, json.dumps(event).encode())
        in_flight += 1
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counter.done.wait(), args.timeout)
    seconds = time.monotonic() - t0
    cpu_us = (_cpu_ns(args.server_pid) - cpu0) / 1e3 / counter.count if args.server_pid and counter.count else None
    publisher.disconnect()
    for member in members:
        if transport == "sse":
            member.close()
        else:
            member.disconnect()
    await asyncio.sleep(1.0)  # let the server see them go
    samples = sorted(counter.samples)
    return Figures(
        transport=transport,
        members=args.members,
        msgs=args.msgs,
        expected=expected,
        received=counter.count,
        seconds=round(seconds, 3),
        deliveries_per_s=round(counter.count / seconds) if seconds else 0.0,
        connect_s=round(connect_s, 2),
        p50_ms=percentile(samples, 0.50),
        p99_ms=percentile(samples, 0.99),
        max_ms=percentile(samples, 1.0),
        server_cpu_us_per_delivery=round(cpu_us, 3) if cpu_us is not None else None,
    )


async def main(args: argparse.Namespace) -> list[Figures]:
    results = []
    for i, transport in enumerate(args.transports.split(",")):
        results.append(await run(transport, args, f"f1-{transport}-{i}-{time.monotonic_ns()}"))
    return results


def table(results: list[Figures]) -> str:
    lines = [
        f"{'transport':<10}{'members':>8}{'received':>10}{'deliv/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'cpu us/deliv':>14}"
    ]
    for r in results:
        cpu = f"{r.server_cpu_us_per_delivery:.3f}" if r.server_cpu_us_per_delivery is not None else "n/a"
        lines.append(
            f"{r.transport:<10}{r.members:>8}{r.received:>10}{r.deliveries_per_s:>10.0f}"
            f"{r.p50_ms or 0:>9.1f}{r.p99_ms or 0:>9.1f}{r.max_ms or 0:>9.1f}{cpu:>14}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--server-pid", type=int, default=0, help="report this process's CPU per delivery")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--msgs", type=int, default=1000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--transports", default="ws,sse", help="comma-separated, run in this order")
    parser.add_argument("--json", action="store_true", help="one JSON line per transport")
    args = parser.parse_args()
    try:
        import uvloop

        found = uvloop.run(main(args))
    except ConnectionError as exc:
        print(f"sse_load: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.json:
        for r in found:
            print(json.dumps(asdict(r)))
    else:
        print(table(found))
    sys.exit(0 if all(r.received == r.expected for r in found) else 1)
