"""Running out of file descriptors, on a real `hubbub serve` with RLIMIT_NOFILE at 64.

Under uvloop's own accept loop, libuv would accept and close the overflow
silently (measured: 51 of 100 connections got a bare EOF, nothing logged or
counted). hubbub's accept loop answers each 503, counts it, logs once, and
serves again as soon as descriptors are free.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sys
from typing import Any

from websockets.exceptions import InvalidStatus

from tests.cluster import free_port
from tests.helpers import EventClient

LIMIT = 64
CLIENTS = 100


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


async def _lines(stream: asyncio.StreamReader, seconds: float, until: str = "") -> list[dict[str, Any]]:
    """JSON log lines that arrive within `seconds`, until the stream ends or an `until` event."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            line = await asyncio.wait_for(stream.readline(), left)
        except TimeoutError:
            break
        if not line:
            break
        found.append(json.loads(line))
        if found[-1]["event"] == until:
            break
    return found


async def _upgrade(port: int) -> tuple[bytes, asyncio.StreamWriter]:
    """Open a socket, ask for /ws, return the status line (b"" for a bare close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    try:
        return await asyncio.wait_for(reader.readline(), 5), writer
    except ConnectionError:
        return b"", writer


async def _metric(port: int, name: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    text = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


async def test_running_out_of_fds_is_answered_counted_logged_once_and_survived() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "serve",
        "--port",
        str(port),
        "--max-connections",
        "1000",  # far above the descriptors: the raw path, not the cap
        "--log-format",
        "json",
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_limit_fds,
    )
    assert proc.stderr is not None
    try:
        started = await _lines(proc.stderr, 10, until="server.max_connections_above_fd_limit")
        assert any(r["event"] == "server.listening" for r in started), started
        assert any(r["event"] == "server.max_connections_above_fd_limit" for r in started)
        opened = [await _upgrade(port) for _ in range(CLIENTS)]
        statuses = [status.split(b" ")[1] if status else b"closed" for status, _ in opened]
        served, lost = statuses.count(b"101"), statuses.count(b"503")
        assert served + lost == CLIENTS, statuses  # every connection got an answer, none a bare close
        assert 20 < served < LIMIT and lost > 0
        told = [r for r in await _lines(proc.stderr, 1) if r["event"] == "accept.out_of_fds"]
        assert len(told) == 1 and told[0]["errno"] == "EMFILE" and told[0]["level"] == "warning"

        for _, writer in opened:
            writer.close()
        client = None
        retried: list[int] = []
        for _ in range(100):  # descriptors come back as the server sees each close
            try:
                client = await EventClient.open(f"ws://127.0.0.1:{port}/ws")
                break
            except InvalidStatus as exc:  # a 503 while the server still holds the old sockets
                retried.append(exc.response.status_code)
                await asyncio.sleep(0.05)
        assert client is not None and set(retried) <= {503}
        lost += len(retried)
        await client.join("lobby")
        await client.request("send_message", {"room": "lobby", "message": "still here"})
        assert (await client.recv_type("new_message"))["payload"]["message"] == "still here"
        await client.close()
        assert await _metric(port, 'hubbub_accept_errors_total{errno="EMFILE"}') == lost
        assert await _metric(port, 'hubbub_handshakes_rejected_total{reason="fd_limit"}') == lost
    finally:
        proc.terminate()
        rest = await _lines(proc.stderr, 5)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    told += [r for r in rest if r["event"] == "accept.out_of_fds"]
    assert sum(r["count"] for r in told) == lost and len(told) <= 3  # a count per line, not a line per loss
