"""The textbook's own checks (`hubbub.textbook`): as a real process, under load, and a stalled reader.

The rules the textbook shares with hubbub are proven by the suite run against both servers
(`any_server`); docs/learn/rules.md lists them. Here: what needs the textbook as a process
(SIGTERM, its flags, a load on the other core), what shows its own bounds (a send queue counted in
messages, a drop that aborts the socket), and `/metrics`, which both servers answer alike.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import hubbub
from hubbub.textbook.__main__ import main
from hubbub.textbook.server import Manager, Options, serve
from tests.helpers import EventClient, RawPeer, eventually, exchange
from tests.integration.conftest import Running

SRC = str(Path(hubbub.__file__).parent.parent)


@asynccontextmanager
async def textbook_process(*flags: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, list[str]]]:
    """`python -m hubbub.textbook --port 0 FLAGS`: the process, its port, and its log lines so far."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubbub.textbook", "--port", "0", *flags, stderr=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stderr is not None
    lines: list[str] = []
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read_log() -> None:  # always drained, so the server never blocks on a full pipe
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(line := raw.decode(errors="replace").rstrip())
            if not port.done() and (found := re.search(r"listening on ws://[^:]+:(\d+)/ws", line)):
                port.set_result(int(found[1]))

    reader = asyncio.create_task(read_log())
    try:
        yield proc, await asyncio.wait_for(port, 10), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader


@asynccontextmanager
async def textbook(**options: object) -> AsyncIterator[tuple[Manager, int]]:
    """The textbook on this loop, with these `Options`: its manager (to count) and its port."""
    manager = Manager(Options(port=0, **options))  # type: ignore[arg-type]
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(manager, stop, ready.set_result))
    try:
        yield manager, await ready
    finally:
        stop.set()
        await task


async def test_sigterm_closes_everyone_with_1001_and_exits_0() -> None:
    async with textbook_process() as (proc, port, lines):
        clients = [await EventClient.open(f"ws://127.0.0.1:{port}/ws?name=c{i}") for i in range(3)]
        for client in clients:
            await client.join("r")
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            await asyncio.wait_for(client.ws.wait_closed(), 5)
            assert client.ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    closed = [line for line in lines if "conn.closed" in line]
    assert len(closed) == 3 and all("code=1001" in line and "peer=127.0.0.1:" in line for line in closed)


def test_bad_flags_get_one_line_each_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "http", "--ping-interval", "-1", "--allowed-origin", "example.com/x"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["--port", "--ping-interval", "--allowed-origin"]


async def test_metrics_shows_the_connection_gauge(any_server: Running) -> None:
    """Both servers answer `GET /metrics` with the gauge `hubbub_connections` (hubbub with much more)."""

    async def gauge() -> float:
        request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{any_server.port}\r\nConnection: close\r\n\r\n"
        answer = await exchange(any_server.port, request.encode())
        assert answer.startswith(b"HTTP/1.1 200") and b"# TYPE hubbub_connections gauge" in answer
        found = re.search(rb"^hubbub_connections ([0-9.]+)\r?$", answer, re.MULTILINE)
        assert found is not None, answer
        return float(found[1])

    assert await gauge() == 0
    clients = [await EventClient.open(any_server.url()) for _ in range(2)]
    await eventually(lambda: any_server.connections() == 2)
    assert await gauge() == 2
    await clients[0].close()
    await eventually(lambda: any_server.connections() == 1)
    assert await gauge() == 1
    await clients[1].close()


async def test_handshake_refusals() -> None:
    """404 for another path, 400 for a name with a control character, 403 for a foreign origin."""
    async with textbook() as (_, port):
        upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        upgrade += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        for target, extra, status in [
            ("/nothing", "", b"404"),
            ("/ws?name=a%0Ab", "", b"400"),
            ("/ws", "Origin: http://evil.example\r\n", b"403"),
            ("/ws?name=ok", "", b"101"),
        ]:
            request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{upgrade}{extra}\r\n"
            answer = await exchange(port, request.encode(), until=b"\r\n\r\n")
            assert answer.split(b" ")[1] == status, (target, answer)


async def test_a_burst_of_thousands_drops_no_reader_that_keeps_up() -> None:
    """3,000 small messages sent at once, with no window, to 20 readers: the send queue (1024
    messages) rides it out, nobody is dropped, everybody gets everything in order."""
    async with textbook() as (manager, port):
        readers = [await EventClient.open(f"ws://127.0.0.1:{port}/ws") for _ in range(20)]
        for reader in readers:
            await reader.join("burst")
        total = 3000

        async def read_all(client: EventClient) -> list[int]:
            return [(await client.recv_type("new_message", timeout=10))["payload"]["offset"] for _ in range(total)]

        collecting = [asyncio.create_task(read_all(r)) for r in readers]
        for i in range(total):
            await readers[0].send("send_message", {"room": "burst", "message": i})
        results = await asyncio.wait_for(asyncio.gather(*collecting), 20)
        assert all(offsets == list(range(1, total + 1)) for offsets in results)
        assert len(manager.clients) == 20
        for reader in readers:
            await reader.close()


async def test_a_stalled_reader_is_dropped_and_the_others_keep_receiving() -> None:
    """A member stops reading: once its queue is full it is dropped (close 1013, aborted after the
    close timeout); the others, reading, get every message. Then what the stalled peer sees: never
    the close frame (it sat behind the unsent bytes), and a reset when it speaks to the closed socket."""
    async with textbook(close_timeout=0.5) as (manager, port):
        stalled = await RawPeer.open(port, limit=1024)
        stalled.shrink_receive_buffer()
        stalled.send_event("join_room", {"room": "busy"}, 1)
        await stalled.read_frame()
        fast = [await EventClient.open(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
        for client in fast:
            await client.join("busy")
        message, total = "m" * 4000, 3000
        got = [0] * len(fast)

        async def drain(i: int) -> None:
            while got[i] < total:
                event = await fast[i].recv_type("new_message", timeout=10)
                assert event["payload"]["offset"] == got[i] + 1
                got[i] += 1

        readers = [asyncio.create_task(drain(i)) for i in range(len(fast))]
        dropped_after = 0
        for n in range(total):
            while n - got[0] >= 16:  # 16 in flight
                await asyncio.sleep(0.001)
            await fast[0].send("send_message", {"room": "busy", "message": message})
            if not dropped_after and len(manager.clients) == len(fast):
                dropped_after = n + 1
        await asyncio.wait_for(asyncio.gather(*readers), 20)
        assert got == [total] * len(fast)
        assert 0 < dropped_after < total, "the stalled reader was never dropped"
        await asyncio.sleep(1.0)  # past the close timeout (0.5 s): the textbook has aborted the socket
        # The kernel still holds the backlog (an orphan socket in FIN-WAIT-1) and trickles it out as
        # the peer's window opens. The peer wakes up and speaks: a closed socket answers with a reset.
        stalled.send_event("leave_room", {"room": "busy"})
        seen, end = b"", "still open"
        try:
            async with asyncio.timeout(5):
                while chunk := await stalled.reader.read(65536):
                    seen += chunk
                end = "FIN"  # possible if the kernel had delivered everything by then
        except ConnectionResetError:
            end = "RST"
        print(f"dropped after {dropped_after} messages; the stalled peer then read {len(seen):,} bytes and {end}")
        assert end in ("RST", "FIN")
        assert b"too slow" not in seen  # the reason of the 1013 close frame: it never reached the peer
        for client in fast:
            await client.close()


async def test_200_clients_500_messages_8_in_flight_lose_nothing() -> None:
    """The textbook in its own process (the other core), one room of 200, a publisher keeping 8
    messages in flight: every member gets all 500, in order, and nobody is dropped."""
    async with textbook_process() as (proc, port, lines):
        members = [await EventClient.open(f"ws://127.0.0.1:{port}/ws?name=m{i}") for i in range(200)]
        for member in members:
            await member.join("load")
        total, window = 500, 8
        counts = [0] * len(members)

        async def count(i: int) -> None:
            while counts[i] < total:
                event = await members[i].recv_type("new_message", timeout=20)
                assert event["payload"]["offset"] == counts[i] + 1
                counts[i] += 1

        started = time.monotonic()
        counting = [asyncio.create_task(count(i)) for i in range(len(members))]
        for n in range(total):
            while n - counts[0] >= window:
                await asyncio.sleep(0.001)
            await members[0].send("send_message", {"room": "load", "message": f"{n:064d}"})
        await asyncio.wait_for(asyncio.gather(*counting), 40)  # 6 to 12 s here; slack for a loaded machine
        print(f"200 x 500 delivered in {time.monotonic() - started:.1f} s")
        assert counts == [total] * len(members)
        assert not [line for line in lines if "slow peer" in line]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
