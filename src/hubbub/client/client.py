"""A Python client that loses nothing: reconnects, resumes its rooms by offset, drops repeats.

    async with hubbub.client.client.connect("ws://127.0.0.1:8000/ws", name="ada") as c:
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

    async with hubbub.client.client.connect("wss://localhost:8443/ws", ca="cert.pem") as c:
        ...

Failures are bounded in time and said in words (`hubbub.client.errors`): a
URL that is not `ws://` or `wss://` raises `InvalidURL` at once; the first
connection must succeed within `connect_timeout` (10 s; each attempt within
`open_timeout`), else `start` raises `HubUnreachable` naming the last reason
(refused, no answer); a handshake refused with a 4xx status (401, 403...)
raises `HandshakeRefused` at once, with the `status`, and 429 or 503 are
retried within `connect_timeout` first. Once connected, a dropped connection
is retried **without limit** by default, so a client outlives a server's
restart; `reconnect_timeout=S` gives up after S seconds without a
connection, and then every request, `next_event` and the iteration raise
`HubUnreachable`. A server that vanishes without a FIN is noticed by a ping
unanswered for `ping_timeout` after `ping_interval` of silence.

The application sees the connection's life among its events (local, not on
the wire, like `room_reset`): `{"type": "disconnected", "payload": {"reason":
R}}` when a connection drops, and `{"type": "reconnected", "payload":
{"reconnects": N}}` once its rooms are joined again. `connected` says
whether it is up now.

This client speaks WebSocket only; it has no fallback to the server's SSE
transport (`GET /sse`), on purpose: it runs in services, scripts and
terminals, on networks where the WebSocket is not refused, and behind a
proxy that refuses `Upgrade` it would need HTTP proxy support (`CONNECT`),
which it does not have, to reach the server at all. A program that only
listens can read `/sse` with httpx; docs/protocol.md, "SSE transport of
protocol v1", shows how and says why in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from ssl import SSLContext
from typing import Any
from urllib.parse import quote, urlsplit

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from hubbub.client.dial import _Retry, closed_by_hub, dial, where
from hubbub.client.errors import HandshakeRefused, HubUnreachable, InvalidURL, check_url
from hubbub.client.tls import client_context
from hubbub.errors import HubbubError

__all__ = [
    "Client",
    "ClientState",
    "HandshakeRefused",
    "HubUnreachable",
    "InvalidURL",
    "RequestFailed",
    "connect",
]

log = logging.getLogger("hubbub.client.client")


class RequestFailed(HubbubError):
    """The server answered a request with an `error` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientState(enum.Enum):
    """Where a `Client` is in its life."""

    CONNECTING = "connecting"
    """Before the first connection."""
    OPEN = "open"
    """Connected, its rooms joined."""
    RECONNECTING = "reconnecting"
    """The connection dropped; dialling again with backoff."""
    CLOSED = "closed"
    """`close` was called, or the client gave up (`failure` says why). Final."""


_END = {"type": "_end"}
"""Put on the event queue when the client closes or gives up: wakes every reader."""


class _Listener(WSListener):
    def __init__(self, client: Client) -> None:
        self._client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self._client._on_text(frame.get_payload_as_utf8_text())
        elif frame.msg_type is WSMsgType.CLOSE:
            self._client._close_reason = closed_by_hub(frame.get_close_code().value)
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
        connect_timeout: float = 10.0,
        reconnect_timeout: float | None = None,
        open_timeout: float = 10.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`ssl` is the TLS context for a `wss://` URL; without it, one that trusts the system's
        CAs, or only `ca` (a PEM file) when given. `ConfigError` if `ca` cannot be read,
        `InvalidURL` for a URL that is not `ws://` or `wss://`.

        `connect_timeout`: seconds for the first connection, retries included; `reconnect_timeout`:
        seconds without a connection after a drop before giving up (None: never give up);
        `open_timeout`: seconds for one attempt (TCP, TLS and the handshake); `ping_interval` and
        `ping_timeout` (at most `ping_interval`): after this much silence a ping is sent, and a hub
        that does not answer it in time is taken for gone (the connection is dropped and dialled again).

        `headers` go with every handshake: a `Cookie` or an `Authorization` header, for a hub whose
        `--connect-proxy` asks the application who the client is (a browser sends its cookie itself).
        """
        check_url(url)
        if not 0 < ping_timeout <= ping_interval:
            raise ValueError("ping_timeout must be more than 0 and at most ping_interval")
        self.url = url if name is None else f"{url}{'&' if '?' in url else '?'}name={quote(name)}"
        if ssl is None and (ca is not None or urlsplit(url).scheme == "wss"):
            ssl = client_context(ca)
        self._ssl = ssl
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._connect_timeout = connect_timeout
        self._reconnect_timeout = reconnect_timeout
        self._open_timeout = open_timeout
        self._ping = (ping_interval, ping_timeout)
        self._headers = dict(headers) if headers else None
        self._transport: WSTransport | None = None
        self._connected = asyncio.Event()
        """Set while the connection is open, and for good once the client is closed or failed."""
        self._lost: asyncio.Event = asyncio.Event()
        self._close_reason = ""
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], Callable[[dict[str, Any]], object] | None]] = {}
        """Requests awaiting their answer: the future, and what to do the moment the ack is read."""
        self._rooms: dict[str, int] = {}
        """Joined rooms and the last offset delivered to the application."""
        self._ids = 0
        self._runner: asyncio.Task[None] | None = None
        self.state = ClientState.CONNECTING
        self.failure: Exception | None = None
        """Why the client gave up (`HubUnreachable`, `HandshakeRefused`...), once `state` is CLOSED."""
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (a send would go out at once)."""
        return self.state is ClientState.OPEN

    # ---- the connection, kept alive ---------------------------------------

    async def start(self) -> None:
        """Connect, retrying with backoff for up to `connect_timeout`, and keep the connection up
        until `close`. Raises `HubUnreachable`, `HandshakeRefused` or `ConnectionRefusedError` (an
        untrusted certificate) when the first connection cannot be made."""
        self._runner = asyncio.get_running_loop().create_task(self._run())
        await self._connected.wait()
        if self.failure is not None:
            await self._runner
            raise self.failure

    async def close(self) -> None:
        """Close the connection and stop reconnecting; readers of events see the end. Idempotent."""
        failure = self.failure
        self._finish(None)
        self.failure = failure
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._transport is not None:
            self._transport.send_close(WSCloseCode.OK)
            self._transport.disconnect()

    def _finish(self, failure: Exception | None) -> None:
        """Become CLOSED (for `failure`, or closed by the application): wake every waiter."""
        if self.state is ClientState.CLOSED:
            return
        self.state = ClientState.CLOSED
        self.failure = failure
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(failure or ConnectionError("the client was closed"))
        self._pending.clear()
        self._connected.set()
        self._events.put_nowait(_END)

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave `start` waiting for ever
            log.exception("client.failed")
            self._finish(exc)

    async def _keep_connected(self) -> None:
        """Connect, and connect again after every drop, until closed or out of time."""
        loop = asyncio.get_running_loop()
        limit: float | None = self._connect_timeout
        since = loop.time()
        attempt = 0
        last: _Retry | None = None
        while True:
            remaining = None if limit is None else since + limit - loop.time()
            if remaining is not None and remaining <= 0 and last is not None:
                self._finish(self._gave_up(last, limit))
                return
            window = self._open_timeout if remaining is None else min(self._open_timeout, max(remaining, 0.5))
            try:
                await self._resume_on(await self._open(window))
            except _Retry as failed:
                # A status the hub said (503, 429) says more than a short last attempt's silence.
                if failed.status is not None or last is None or last.status is None:
                    last = failed
                delay = random.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))
                if limit is not None:
                    delay = min(delay, since + limit - loop.time())
                attempt += 1
                log.debug("client.retry", extra={"error": failed.reason, "delay": round(delay, 3)})
                await asyncio.sleep(max(0.0, delay))
                continue
            except ConnectionRefusedError as refused:  # HandshakeRefused, or an untrusted certificate
                self._finish(refused)
                return
            last = None
            if self.state is ClientState.RECONNECTING:
                self.reconnects += 1
                self._events.put_nowait({"type": "reconnected", "payload": {"reconnects": self.reconnects}})
            self.state = ClientState.OPEN
            self._connected.set()
            await self._lost.wait()
            self._connected.clear()
            self.state = ClientState.RECONNECTING
            reason = self._close_reason or "the connection dropped"
            self._events.put_nowait({"type": "disconnected", "payload": {"reason": reason}})
            limit, since, attempt = self._reconnect_timeout, loop.time(), 0

    def _gave_up(self, last: _Retry, limit: float | None) -> Exception:
        """What the client raises when `limit` seconds passed without a connection."""
        if last.status is not None:
            return HandshakeRefused(last.status, last.body, retried_for=limit)
        return HubUnreachable(f"no connection to {self._where()} within {limit:g} s: {last.reason}")

    def _where(self) -> str:
        return where(self.url)

    async def _open(self, timeout: float) -> WSTransport:  # noqa: ASYNC109
        """One attempt, within `timeout` seconds; `_Retry` when it may pass, the final exception else."""
        self._lost.clear()
        self._close_reason = ""
        return await dial(lambda: _Listener(self), self.url, self._ssl, timeout, self._ping, self._headers)

    async def _resume_on(self, transport: WSTransport) -> None:
        """Use `transport`: join every room again (`_Retry` if that fails or takes too long)."""
        self._transport = transport
        try:
            async with asyncio.timeout(self._open_timeout):
                await self._resume()
        except (ConnectionError, RequestFailed, TimeoutError) as exc:
            transport.disconnect()
            await self._lost.wait()
            raise _Retry(f"rejoining the rooms failed: {exc}") from None

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
        if not self._close_reason:
            self._close_reason = "the connection dropped"
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
            if self.state is ClientState.CLOSED:
                raise self.failure or ConnectionError("the client is closed")
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
        """The next event for the application (messages deduplicated across reconnects).

        Once the client has given up, `failure` (`HubUnreachable`...); once closed, `ConnectionError`.
        """
        async with asyncio.timeout(timeout):
            event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)  # for the next reader too
            raise self.failure or ConnectionError("the client is closed")
        return event

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Events until the client is closed (the iteration ends) or gives up (`failure` is raised)."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.next_event()
            except ConnectionError:
                if self.failure is not None:
                    raise
                return


@contextlib.asynccontextmanager
async def connect(
    url: str,
    name: str | None = None,
    backoff: float = 0.2,
    max_backoff: float = 10.0,
    *,
    ssl: SSLContext | None = None,
    ca: str | None = None,
    connect_timeout: float = 10.0,
    reconnect_timeout: float | None = None,
    open_timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Client]:
    """Connect to a hub; the client reconnects by itself until the block ends (`ssl`, `ca`, the
    timeouts and the handshake's `headers`, such as a Cookie for a connect proxy: see `Client`)."""
    client = Client(
        url,
        name,
        backoff,
        max_backoff,
        ssl=ssl,
        ca=ca,
        connect_timeout=connect_timeout,
        reconnect_timeout=reconnect_timeout,
        open_timeout=open_timeout,
        headers=headers,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()
