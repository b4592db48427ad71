"""A webhook endpoint for tests: a small HTTP/1.1 server on loopback that records what it is sent.

It answers each POST with the next of its scripted `answers` (a status, or
`HANG` to never answer), then `default`; `delay` slows every answer down.
It verifies nothing itself: tests check signatures with `hubbub.auth.signing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubbub.auth.signing import HEADER, verify

HANG = -1
"""An answer that never comes: the request is read and the socket left open."""


@dataclass
class Request:
    """One POST as received, with the status it was answered (None: never answered)."""

    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    def signed_by(self, secret: str) -> bool:
        return verify(secret, self.body, self.headers.get(HEADER.lower()))


@dataclass
class Receiver:
    """Records requests; `delivered` are the events it answered with a 2xx, in the order it got them."""

    answers: deque[int] = field(default_factory=deque)
    default: int = 200
    answer: Callable[[Request], int | None] | None = None
    """Chooses the status of a request first, when set (None: the scripted or default answer)."""
    delay: float = 0.0
    retry_after: str = ""
    """Sent as `Retry-After` with every answer that is not a 2xx, when set."""
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _hanging: list[asyncio.StreamWriter] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def close(self) -> None:
        # Closing the sockets ends each handler (a cancelled one would be logged as an error on 3.11).
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=5)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r.event for r in self.requests if r.status is not None and 200 <= r.status < 300]

    def types(self) -> list[str]:
        return [e["type"] for e in self.delivered]

    async def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> None:
        """Until `check(delivered)` holds; fails with what was delivered after `timeout`."""
        deadline = time.monotonic() + timeout
        while not check(self.delivered):
            if time.monotonic() > deadline:
                raise AssertionError(f"not delivered in {timeout}s: {self.types()}")
            await asyncio.sleep(0.02)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(headers, body, time.monotonic())
                self.requests.append(request)
                status = self.answer(request) if self.answer is not None else None
                if status is None:
                    status = self.answers.popleft() if self.answers else self.default
                if status == HANG:
                    self._hanging.append(writer)
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                request.status = status
                extra = f"Retry-After: {self.retry_after}\r\n" if self.retry_after and status >= 300 else ""
                writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            if writer not in self._hanging:
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()
