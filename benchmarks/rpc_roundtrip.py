"""The cost of an `rpc` round trip: an in-process method (`@hub.rpc`) against the RPC proxy (`--rpc-proxy`).

    PYTHONPATH=src:. python3 benchmarks/rpc_roundtrip.py [--calls 1000]

Three processes on loopback: `hubbub serve --app benchmarks.rpc_roundtrip:hub --rpc-proxy URL`,
the application behind the proxy (a keep-alive HTTP/1.1 server on asyncio streams, in this file,
answering `{"data": <the call's data>}` at once), and this one, the client: one WebSocket,
one call at a time (the next sent when the previous answer arrived), `--calls` calls of each kind
after 100 of warm-up. Printed: the median and p99 in milliseconds of

- `baseline`: an event of no known type, answered `unknown_type` at once (no handler, no task):
  what the socket, the server's read and write and this Python client cost on their own;
- `in-process`: method `local`, answered by the app's `@hub.rpc("local")`;
- `proxy`: method `remote`, POSTed to the app behind `--rpc-proxy` (signed, read, answered);
- `http only`: the same POST made by this process straight to the app (httpx, keep-alive), the
  part of the proxy's figure that is the app and HTTP rather than hubbub.

The server gathers its writes for `--write-delay` (2 ms by default), which every answer waits
for: `--write-delay 0` shows the calls' own cost. One JSON line with the figures is printed last
(for benchmarks/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hubbub import Connection, Hub

ROOT = Path(__file__).resolve().parents[1]

hub = Hub()


@hub.rpc("local")
def local(conn: Connection, data: Any) -> Any:
    """The in-process method: the data back, as the proxy's app does."""
    return data


# ---- the application behind the proxy ----------------------------------------------------------


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each request of a keep-alive connection with `{"data": <its data>}`."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = json.loads(await reader.readexactly(length))
            answer = json.dumps({"data": body.get("data")}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(answer), answer)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def run_app(port: int) -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# ---- the client ----------------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"median_ms": round(statistics.median(ms), 3), "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3)}


def start(app_port: int, hub_port: int, write_delay: float | None) -> list[subprocess.Popen[bytes]]:
    """The app behind the proxy and `hubbub serve`, each in its own process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    app = subprocess.Popen([sys.executable, __file__, "--app-port", str(app_port)], env=env)
    flags = ["--app", "benchmarks.rpc_roundtrip:hub", "--port", str(hub_port), "--rate-limit", "0"]
    flags += ["--rpc-proxy", f"http://127.0.0.1:{app_port}/rpc", "--webhook-secret", "benchmark-secret"]
    flags += ["--log-level", "warning"]
    if write_delay is not None:
        flags += ["--write-delay", str(write_delay)]
    server = subprocess.Popen([sys.executable, "-m", "hubbub", "serve", *flags], env=env, cwd=ROOT)
    return [server, app]


async def measure(app_port: int, hub_port: int, calls: int) -> dict[str, Any]:
    """The round trips, once the server answers `/healthz`."""
    import httpx
    from websockets.asyncio.client import connect

    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(f"http://127.0.0.1:{hub_port}/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        results: dict[str, Any] = {}
        async with connect(f"ws://127.0.0.1:{hub_port}/ws?name=bench") as ws:
            for label, method in (("baseline", ""), ("in-process", "local"), ("proxy", "remote")):
                times: list[float] = []
                for n in range(100 + calls):
                    event = {"type": "rpc", "payload": {"method": method, "data": n}, "id": n}
                    if not method:  # answered at once, without a handler: the socket's and client's share
                        event = {"type": "no_such_type", "payload": {}, "id": n}
                    started = time.perf_counter()
                    await ws.send(json.dumps(event))
                    answer = json.loads(await ws.recv())
                    elapsed = time.perf_counter() - started
                    assert answer["id"] == n and (not method or answer["payload"] == {"data": n}), answer
                    if n >= 100:
                        times.append(elapsed)
                results[label] = summary(times)
        times = []
        body = {"user": "bench", "method": "remote", "client": "127.0.0.1:1"}
        for n in range(100 + calls):
            started = time.perf_counter()
            got = await http.post(f"http://127.0.0.1:{app_port}/rpc", json={**body, "data": n})
            elapsed = time.perf_counter() - started
            assert got.json() == {"data": n}
            if n >= 100:
                times.append(elapsed)
        results["http only"] = summary(times)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--write-delay", type=float, help="the server's --write-delay (default: its own, 2 ms)")
    parser.add_argument("--app-port", type=int, help=argparse.SUPPRESS)  # the child that plays the app
    args = parser.parse_args()
    if args.app_port:
        asyncio.run(run_app(args.app_port))
        return
    from tests.cluster import free_port

    app_port, hub_port = free_port(), free_port()
    processes = start(app_port, hub_port, args.write_delay)
    try:
        results = asyncio.run(measure(app_port, hub_port, args.calls))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    for label, figures in results.items():
        print(f"{label:>10}: median {figures['median_ms']:.3f} ms, p99 {figures['p99_ms']:.3f} ms")
    line = {"bench": "rpc_roundtrip", "calls": args.calls, "write_delay": args.write_delay, **results}
    line["python"] = platform.python_version()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
