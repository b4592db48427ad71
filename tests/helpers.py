"""Test clients: a JSON-event client on `websockets`, and a raw-socket peer.

The raw peer speaks just enough RFC 6455 to misbehave on purpose: stop
reading, vanish with an RST or a FIN, send broken frames, never answer pings.
It uses asyncio streams, because the server under test runs on the same loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from hubbub.server.server import Server

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class EventClient:
    """A well-behaved client: send events, await replies and pushed events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next = 0
        self._backlog: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> EventClient:
        return cls(await connect(url, **kwargs))

    async def send(self, type_: str, payload: Any, id_: Any = None) -> None:
        event: dict[str, Any] = {"type": type_, "payload": payload}
        if id_ is not None:
            event["id"] = id_
        await self.ws.send(json.dumps(event))

    async def request(self, type_: str, payload: Any) -> dict[str, Any]:
        """Send with a fresh id; return the ack or error for it, skipping pushed events."""
        self._next += 1
        id_ = f"t{self._next}"
        await self.send(type_, payload, id_)
        while True:
            event = await self._recv_wire()
            if event.get("id") == id_:
                return event
            self._backlog.append(event)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next event, including those `request` stepped over."""
        if self._backlog:
            return self._backlog.pop(0)
        return await self._recv_wire(timeout)

    async def _recv_wire(self, timeout: float = 5.0) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, str)
        event: dict[str, Any] = json.loads(data)
        return event

    async def recv_type(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            event = await self.recv(timeout)
            if event["type"] == type_:
                return event

    async def join(self, room: str) -> dict[str, Any]:
        reply = await self.request("join_room", {"room": room})
        assert reply["type"] == "ack", reply
        return reply

    async def close(self) -> None:
        await self.ws.close()


def mask_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class RawPeer:
    """A WebSocket peer on a bare socket: it does only what the test tells it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, path: str = "/ws", headers: dict[str, str] | None = None, limit: int = 2**16
    ) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    def shrink_receive_buffer(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.writer.write(mask_frame(opcode, payload, fin))

    def send_event(self, type_: str, payload: Any, id_: Any = None) -> None:
        event: dict[str, Any] = {"type": type_, "payload": payload}
        if id_ is not None:
            event["id"] = id_
        self.send_frame(TEXT, json.dumps(event).encode())

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return head[0] & 0x0F, await self.reader.readexactly(n)

    async def read_close_code(self, timeout: float = 5.0) -> int:
        """Read frames until a close frame; return its code."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == CLOSE:
                code: int = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code

    def reset(self) -> None:
        """Vanish with an RST: SO_LINGER 0, then close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def fin(self) -> None:
        """Vanish with a FIN and no close frame."""
        self.writer.close()


def ws_url(server: Server, path: str = "/ws", query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{path}{'?' + query if query else ''}"


async def eventually(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until `check()` is true; fail the test with a clear message otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def exchange(port: int, data: bytes, until: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send raw `data` on a new socket to `port`; read until `until` is seen, the server closes, or
    `timeout` passes (then what came so far is returned, for the caller's assertions to judge)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while not (until and until in got):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return got
