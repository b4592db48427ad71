"""A TCP proxy that forwards HTTP but refuses WebSocket upgrades, as a corporate proxy or antivirus does.

Each connection's first request head is read (at most 16 KiB, within 10 s); a request with an
`Upgrade` header is answered `403 Forbidden` and closed, anything else is forwarded as bytes both
ways to the target until either side closes. Used by the browser tests of hubbub.js's SSE fallback
(tests/e2e/test_sse_fallback.py) and the AI answer stream example.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from tests.cluster import free_port

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 10.0
UPGRADE = re.compile(rb"^upgrade\s*:", re.IGNORECASE | re.MULTILINE)
REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 24\r\nConnection: close\r\n\r\nWebSockets are blocked.\n"


class NoUpgradeProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target`, refusing upgrades.

    With `upgrades=True` it forwards them too: a plain proxy, for a test that needs to `cut()` a
    page's connections (Chromium's offline mode does not end a stream that is already open).

    `refused` counts the upgrades refused; `forwarded` the connections passed on. Every connection's
    task is tracked and awaited by `stop()`.
    """

    def __init__(self, target: int, *, upgrades: bool = False, delay: float = 0.0) -> None:
        self.target = target
        self.upgrades = upgrades
        self.delay = delay
        """Seconds each chunk waits before it is passed on, either way: a network's latency, roughly."""
        self.port = free_port()
        self.refused = 0
        self.forwarded = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> NoUpgradeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        """Stop listening and end every connection; their tasks end by themselves once the sockets
        are aborted (cancelling a connection's task would make asyncio log it as an error)."""
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=5)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every forwarded connection at once (the client sees its stream break)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def __aenter__(self) -> NoUpgradeProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > HEAD_LIMIT:
                return
            if not self.upgrades and UPGRADE.search(head):
                self.refused += 1
                await asyncio.sleep(self.delay * 2)  # there and back
                writer.write(REFUSAL)
                await writer.drain()
                return
            self.forwarded += 1
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target)
            self._writers.add(upstream)
            await asyncio.sleep(self.delay)
            upstream.write(head)
            await asyncio.gather(_pipe(reader, upstream, self.delay), _pipe(up_reader, writer, self.delay))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client or the target went away: this connection ends, the proxy lives on
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float) -> None:
    """Copy until `source` ends or either side fails, then close `sink` for writing; bounded by
    the sink's drain. Each chunk waits `delay` seconds first."""
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            if delay:
                await asyncio.sleep(delay)
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
