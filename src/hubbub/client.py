"""A Python client that loses nothing: reconnects, resumes its rooms by offset, drops repeats.

    async with hubbub.client.connect("ws://127.0.0.1:8000/ws", name="ada") as c:
        await c.join("lobby")
        await c.send("lobby", "hello")
        async for event in c:
            print(event["type"], event["payload"])

When the connection drops, the client reconnects by itself with exponential
backoff and full jitter, joins its rooms again with `since` set to the last
offset it delivered, and skips any `new_message` it has already delivered. If
history no longer reached back far enough, it yields a local event
`{"type": "room_reset", "payload": {"room": R, "offset": O}}` so the
application can reload that room some other way. Together with the server's
history this makes delivery to the application exactly-once within history.

A `wss://` URL is verified against the system's CAs, or against `ca` (a PEM
file, such as a server's self-signed certificate), or with the `ssl` context
given:

    async with hubbub.client.connect("wss://localhost:8443/ws", ca="cert.pem") as c:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from ssl import SSLCertVerificationError, SSLContext
from typing import Any
from urllib.parse import quote, urlsplit

from picows import WSCloseCode, WSFrame, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from hubbub.tls import client_context

log = logging.getLogger("hubbub.client")


class RequestFailed(Exception):
    """The server answered a request with an `error` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Listener(WSListener):
    def __init__(self, client: Client) -> None:
        self._client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self._client._on_text(frame.get_payload_as_utf8_text())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._client._on_disconnected()


class Client:
    """One logical connection to a hub, surviving any number of real ones."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        *,
        ssl: SSLContext | None = None,
        ca: str | None = None,
    ) -> None:
        """`ssl` is the TLS context for a `wss://` URL; without it, one that trusts the system's
        CAs, or only `ca` (a PEM file) when given. `ConfigError` if `ca` cannot be read."""
        self.url = url if name is None else f"{url}{'&' if '?' in url else '?'}name={quote(name)}"
        if ssl is None and (ca is not None or urlsplit(url).scheme == "wss"):
            ssl = client_context(ca)
        self._ssl = ssl
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._transport: WSTransport | None = None
        self._connected = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], Callable[[dict[str, Any]], object] | None]] = {}
        """Requests awaiting their answer: the future, and what to do the moment the ack is read."""
        self._rooms: dict[str, int] = {}
        """Joined rooms and the last offset delivered to the application."""
        self._ids = 0
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._fatal: Exception | None = None
        self.reconnects = 0

    # ---- the connection, kept alive ---------------------------------------

    async def start(self) -> None:
        """Connect (retrying with backoff) and keep the connection up until `close`."""
        self._runner = asyncio.get_running_loop().create_task(self._run())
        await self._connected.wait()
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._transport is not None:
            self._transport.send_close(WSCloseCode.OK)
            self._transport.disconnect()

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                self._lost.clear()
                transport, _ = await ws_connect(lambda: _Listener(self), self.url, ssl_context=self._ssl)
            except WSHandshakeError as exc:
                status = exc.response.status if exc.response is not None else 0
                # Refused (origin, credentials, name): retrying cannot help. But 429 (too many
                # connections from this address) and 503 (server full) pass: retried with backoff.
                if 400 <= status < 500 and status != 429:
                    self._fatal = ConnectionRefusedError(f"the hub refused the connection: HTTP {int(status)}")
                    self._connected.set()
                    return
                delay = random.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except SSLCertVerificationError as exc:  # the server is not who the URL says: retrying cannot help
                self._fatal = ConnectionRefusedError(f"the hub's TLS certificate is not trusted: {exc.verify_message}")
                self._connected.set()
                return
            except Exception as exc:  # any other failed dial is retried
                delay = random.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))
                attempt += 1
                log.debug("client.retry", extra={"error": str(exc), "delay": round(delay, 3)})
                await asyncio.sleep(delay)
                continue
            self._transport = transport
            try:
                await self._resume()
            except (ConnectionError, RequestFailed):
                transport.disconnect()
                await self._lost.wait()
                continue
            attempt = 0
            self._connected.set()
            await self._lost.wait()
            self._connected.clear()
            self.reconnects += 1

    async def _resume(self) -> None:
        """After a reconnect, join every room again from the last offset delivered."""
        for room, offset in list(self._rooms.items()):

            def rejoined(ack: dict[str, Any], room: str = room, offset: int = offset) -> None:
                if not ack.get("recovered", True) or ack["offset"] < offset:  # trimmed, or the room started over
                    self._rooms[room] = ack["offset"]
                    self._events.put_nowait({"type": "room_reset", "payload": {"room": room, "offset": ack["offset"]}})

            await self._request("join_room", {"room": room, "since": offset}, rejoined)

    def _on_disconnected(self) -> None:
        self._transport = None
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection dropped before the answer came"))
        self._pending.clear()
        self._lost.set()

    def _on_text(self, text: str) -> None:
        try:
            event: dict[str, Any] = json.loads(text)
        except (ValueError, RecursionError):  # not from a hubbub server, or nested past what json can read
            return
        kind = event.get("type")
        if kind in ("ack", "error"):
            future, on_ack = self._pending.pop(str(event.get("id")), (None, None))
            if future is not None and not future.done():
                if kind == "ack":
                    # Acted on here, not when the requester wakes up: the events read
                    # right after an ack (in the same packet, often) must see its effect.
                    if on_ack is not None:
                        on_ack(event.get("payload") or {})
                    future.set_result(event.get("payload") or {})
                else:
                    p = event.get("payload") or {}
                    future.set_exception(RequestFailed(p.get("code", "?"), p.get("message", "")))
                return
        if kind == "new_message":
            payload = event["payload"]
            room, offset = payload["room"], payload["offset"]
            if room not in self._rooms or offset <= self._rooms[room]:
                return  # a repeat after a resume, or a room we left
            self._rooms[room] = offset
        self._events.put_nowait(event)

    async def _request(
        self, type_: str, payload: dict[str, Any], on_ack: Callable[[dict[str, Any]], object] | None = None
    ) -> dict[str, Any]:
        transport = self._transport
        if transport is None:
            raise ConnectionError("not connected")
        self._ids += 1
        event_id = f"py{self._ids}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = (future, on_ack)
        transport.send(WSMsgType.TEXT, json.dumps({"type": type_, "payload": payload, "id": event_id}).encode())
        return await future

    async def request(
        self,
        type_: str,
        payload: dict[str, Any],
        timeout: float = 10.0,  # noqa: ASYNC109
        on_ack: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """Send an event once connected and return its ack payload; `RequestFailed` on `error`.

        `on_ack` runs as the ack is read, before any event that follows it.
        """
        async with asyncio.timeout(timeout):
            await self._connected.wait()
            return await self._request(type_, payload, on_ack)

    # ---- the API ------------------------------------------------------------

    async def join(self, room: str) -> dict[str, Any]:
        return await self.request(
            "join_room", {"room": room}, on_ack=lambda ack: self._rooms.setdefault(room, ack["offset"])
        )

    async def leave(self, room: str) -> None:
        self._rooms.pop(room, None)
        await self.request("leave_room", {"room": room})

    async def send(self, room: str, message: Any) -> int:
        """Publish; returns the message's offset. Not retried: a send is at most once."""
        ack = await self.request("send_message", {"room": room, "message": message})
        offset: int = ack["offset"]
        return offset

    async def history(self, room: str, since: int | None = None, limit: int = 100) -> dict[str, Any]:
        payload: dict[str, Any] = {"room": room, "limit": limit}
        if since is not None:
            payload["since"] = since
        return await self.request("get_history", payload)

    async def presence(self, room: str) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = (await self.request("get_presence", {"room": room}))["members"]
        return members

    async def next_event(self, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """The next event for the application (messages deduplicated across reconnects)."""
        if timeout is None:
            return await self._events.get()
        return await asyncio.wait_for(self._events.get(), timeout)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self._events.get()


@contextlib.asynccontextmanager
async def connect(
    url: str,
    name: str | None = None,
    backoff: float = 0.2,
    max_backoff: float = 10.0,
    *,
    ssl: SSLContext | None = None,
    ca: str | None = None,
) -> AsyncIterator[Client]:
    """Connect to a hub; the client reconnects by itself until the block ends (`ssl`, `ca`: see
    `Client`)."""
    client = Client(url, name, backoff, max_backoff, ssl=ssl, ca=ca)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
