"""The F2 message path in one process, without sockets: Python's share of the cost.

500 rooms of 10 connections whose transports only count what they are given;
each room's first member sends `send_message` events with an `id` (so acks are
built too), the same way picows would hand them over, and the fan-out flushes
as in the server. It prints CPU per inbound message. Under callgrind it counts
instructions, which, unlike time on a shared VM, repeat exactly:

    python benchmarks/inprocess.py 100
    for n in 4 12; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" benchmarks/inprocess.py $n 2>&1 | grep refs; done
    # instructions per message = (refs(12) - refs(4)) / (8 * 4000)
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

import uvloop

from hubbub.core.connection import Connection
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings

ROOMS, MEMBERS, WINDOW = 500, 10, 8


class CountingTransport:
    """Stands in for both picows' transport and the socket transport under it."""

    def __init__(self) -> None:
        self.underlying_transport = self
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> None:
        return None  # no socket to set options on

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def main(rounds: int) -> None:
    hub = Hub(Settings(write_delay=0.0, rate_limit=0))  # one publisher per room at full speed
    await hub.start()
    conns: list[Connection] = []
    for r in range(ROOMS):
        for _ in range(MEMBERS):
            conn = Connection(hub, None)
            transport: Any = CountingTransport()
            conn.attach(transport, transport.underlying_transport)
            conns.append(conn)
            await hub.join(conn, f"room{r}")
    publishers = conns[::MEMBERS]
    texts = [
        [
            f'{{"type":"send_message","id":{k},"payload":{{"room":"room{r}",'
            f'"message":"ts=1764115200000000000;seq={k};{"x" * 40}"}}}}'
            for k in range(WINDOW)
        ]
        for r in range(ROOMS)
    ]
    gc.collect()
    cpu = time.process_time()
    for _ in range(rounds):
        for publisher, mine in zip(publishers, texts, strict=True):
            for text in mine:
                publisher.receive_text(text)
        for _ in range(3):  # the flush runs on the next loop turn
            await asyncio.sleep(0)
    cpu = time.process_time() - cpu
    messages = rounds * ROOMS * WINDOW
    writes = sum(c._raw.writes for c in conns)
    print(f"{messages} messages: {cpu / messages * 1e6:.2f} us CPU each, {writes / messages:.2f} writes each")


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
