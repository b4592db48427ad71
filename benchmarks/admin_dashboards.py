"""N admin dashboards polling one node as the page does, and the node's CPU while they do.

    python benchmarks/admin_dashboards.py --port 8000 --password P --dashboards 10 --seconds 30 --pid PID

Each dashboard logs in, then asks `/admin/api/stats` every second and `/admin/api/rooms` and
`/admin/api/room?room=R` every two seconds (what admin.js does with one room open), each on its
own keep-alive connection. With `--pid`, prints the node's CPU seconds over the run (utime + stime
from /proc) and per second. `--dashboards 0` measures the same span with none: the difference is
what watching costs. docs/howto/admin.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def dashboard(base: str, password: str, room: str, until: float, counts: list[int]) -> None:
    origin = {"Origin": base}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        login = await client.post("/admin/login", json={"password": password}, headers=origin)
        login.raise_for_status()
        tick = 0
        while time.monotonic() < until:
            started = time.monotonic()
            (await client.get("/admin/api/stats")).raise_for_status()
            counts[0] += 1
            if tick % 2 == 0:
                (await client.get("/admin/api/rooms")).raise_for_status()
                (await client.get(f"/admin/api/room?room={room}")).raise_for_status()
                counts[0] += 2
            tick += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--password", required=True)
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--room", default="bench-0")
    parser.add_argument("--pid", type=int, default=0)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    counts = [0]
    before = cpu_seconds(args.pid) if args.pid else 0.0
    started = time.monotonic()
    until = started + args.seconds
    if args.dashboards:
        boards = [dashboard(base, args.password, args.room, until, counts) for _ in range(args.dashboards)]
        await asyncio.gather(*boards)
    else:
        await asyncio.sleep(args.seconds)
    span = time.monotonic() - started
    line = f"dashboards={args.dashboards} seconds={span:.1f} requests={counts[0]}"
    if args.pid:
        used = cpu_seconds(args.pid) - before
        line += f" node_cpu_s={used:.3f} node_cpu_pct={100 * used / span:.2f}"
    print(line)


if __name__ == "__main__":
    asyncio.run(main())
