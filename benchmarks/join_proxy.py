"""What a join through the join proxy costs against an open join, on loopback.

One hubbub server per case in this process (uvloop), one client, and for the proxy case a minimal
keep-alive HTTP application on loopback that admits every join (an empty 200): the cost measured is
hubbub's call (signing, httpx, the app's read and answer), not any app's decision. The client joins
a room and leaves it, N times, timing each `join_room` to its ack; joins are rate-limited by
default, so `--join-rate 0` here.

    PYTHONPATH=src python benchmarks/join_proxy.py 1000 [WRITE_DELAY]

Both cases include `--write-delay` (2 ms by default: an ack waits for the next gathered write);
`0` as the second argument shows the join's own cost.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import uvloop
from websockets.asyncio.client import connect

from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"


async def admit_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 application that answers every POST with an empty 200."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(OK)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def joins(n: int, **settings: Any) -> list[float]:
    """Seconds from each `join_room` sent to its ack, `n` of them (each followed by a leave)."""
    server = Server(Hub(Settings(port=0, join_rate=0, rate_limit=0, presence_events=False, **settings)))
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            took: list[float] = []
            for i in range(n + 50):  # the first 50 warm up (the app's connection, caches)
                start = time.perf_counter()
                await ws.send(json.dumps({"type": "join_room", "payload": {"room": "r"}, "id": i}))
                answer = json.loads(await ws.recv())
                elapsed = time.perf_counter() - start
                assert answer["type"] == "ack" and answer["id"] == i, answer
                await ws.send(json.dumps({"type": "leave_room", "payload": {"room": "r"}, "id": -1}))
                assert json.loads(await ws.recv())["id"] == -1
                if i >= 50:
                    took.append(elapsed)
            return took
    finally:
        await server.stop()


def summary(name: str, took: list[float]) -> dict[str, Any]:
    ordered = sorted(took)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"case": name, "joins": len(took), "median_ms": statistics.median(took) * 1e3, "p99_ms": p99 * 1e3}


async def main(n: int, write_delay: float) -> None:
    app = await asyncio.start_server(admit_all, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{app.sockets[0].getsockname()[1]}/join"
    try:
        rows = [
            summary("open", await joins(n, write_delay=write_delay)),
            summary(
                "join proxy", await joins(n, write_delay=write_delay, join_proxy=url, webhook_secret="bench-secret")
            ),
        ]
    finally:
        app.close()
    for row in rows:
        row |= {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}
        print(json.dumps(row | {"write_delay": write_delay}))


if __name__ == "__main__":
    uvloop.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, float(sys.argv[2]) if len(sys.argv) > 2 else 0.002)
    )
