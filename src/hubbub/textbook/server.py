"""The textbook hub: gorilla's chat example and the Go tutorial's manager, in asyncio on `websockets`.

Read it top to bottom; each part names the Go it mirrors, from gorilla/websocket's `examples/chat`
(hub.go, client.go) and "Mastering WebSockets with Go" (event.go, manager.go, client.go):

    Manager  register / unregister, rooms, handlers by type   (hub.go's Hub, manager.go's Manager)
    Client   a bounded send queue, a read loop, a write loop   (client.go's Client, readPump, writePump)
    serve()  the listener, the handshake rules, the shutdown   (main.go, serveWs, checkOrigin)

Go has one writer per connection because goroutines run in parallel and a connection takes one writer
at a time. One thread runs all of this, so the single write loop is about order and a bound: its queue
is where a slow reader shows. Where Go sends on a channel (`hub.register <- c`), this calls a method.
"""

from __future__ import annotations

import asyncio
import datetime
import http
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as listen
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hubbub.errors import EventError  # a handler's "no": an `error` event; the connection stays open
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.origins import origin_allowed

log = logging.getLogger("hubbub.textbook")

SEND_QUEUE = 1024
"""Messages a send queue holds (gorilla: 256). It fills only while the socket's buffers are full: a
reader that keeps up rides out a burst of thousands, one that stopped fills it within a second in a
busy room. Counted in messages, not bytes (1024 of 64 KiB is 64 MiB): hubbub counts bytes."""
WRITE_TIMEOUT = 10.0  # seconds one write may wait (gorilla's writeWait): a stalled reader in a quiet room
CLOSE_TIMEOUT = 2.0  # seconds to wait for the peer's close frame after sending ours, then abort
NAME_MAX = 64
MAX_DEPTH = 128  # hubbub's JSON depth limit: json.loads recurses, and how deep it may differs by Python version
ROOM = re.compile(r"[A-Za-z0-9_\-.:@]{1,128}")  # PROTOCOL.md's room names, matched with fullmatch


@dataclass(frozen=True)
class Options:
    """What `python -m hubbub.textbook` takes on its command line (the constants of gorilla's client.go)."""

    host: str = "127.0.0.1"
    port: int = 8001
    max_message_size: int = 65536  # gorilla: maxMessageSize, conn.SetReadLimit
    ping_interval: float = 20.0  # gorilla: pingPeriod; 0 turns heartbeats off
    ping_timeout: float = 20.0  # gorilla: pongWait
    allowed_origins: tuple[str, ...] = ()  # empty: only pages served from the same host and port
    send_queue: int = SEND_QUEUE
    write_timeout: float = WRITE_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT


# ---- Events: the tutorial's event.go. An event is {"type", "payload", "id"?}; a handler per type.
Handler = Callable[["Client", dict[str, Any]], dict[str, Any]]  # the tutorial's EventHandler; returns the ack


def encode(event: dict[str, Any]) -> str:
    # ensure_ascii (the default) escapes a lone surrogate a client sent as "\ud800": written raw, it
    # could not be encoded to UTF-8 and would kill the write loop of every member of the room.
    return json.dumps(event, separators=(",", ":"))


def room_of(payload: dict[str, Any]) -> str:
    room = payload.get("room")
    if not isinstance(room, str) or not ROOM.fullmatch(room):
        raise EventError(ErrorCode.BAD_PAYLOAD, "room must be 1 to 128 letters, digits and _ - . : @")
    return room


def too_deep(text: str) -> bool:
    """Whether JSON text nests deeper than MAX_DEPTH, its strings left out (few brackets: no walk)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth, quoted, escaped = 0, False, False
    for ch in text:
        if quoted:
            escaped, quoted = (not escaped and ch == "\\"), quoted and (escaped or ch != '"')
        elif ch == '"':
            quoted = True
        elif ch in "[{" and (depth := depth + 1) > MAX_DEPTH:
            return True
        elif ch in "]}":
            depth -= 1
    return False


def valid_name(name: object) -> bool:
    return isinstance(name, str) and 1 <= len(name) <= NAME_MAX and name.isprintable()


def join_room(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    room = room_of(payload)
    client.manager.join(client, room)
    return {"room": room, "offset": client.manager.offsets.get(room, 0)}


def leave_room(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    room = room_of(payload)
    if room not in client.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, f"not in room {room}")
    client.manager.leave(client, room)
    return {"room": room}


def send_message(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    room = room_of(payload)
    if "message" not in payload:
        raise EventError(ErrorCode.BAD_PAYLOAD, "message is required")
    sender = payload.get("from")
    if sender is not None and not valid_name(sender):
        raise EventError(ErrorCode.BAD_PAYLOAD, f"from must be 1 to {NAME_MAX} printable characters")
    if room not in client.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, f"join {room} before sending to it")
    offset = client.manager.publish(room, payload["message"], client.name or sender or "anonymous")
    return {"room": room, "offset": offset}


# ---- The manager: gorilla's hub.go (Hub, run) and the tutorial's manager.go (Manager, serveWS).
class Manager:
    """Every client, every room, and the handler of each event type. gorilla's Hub is changed only by
    its `run` goroutine, through channels; the tutorial's Manager takes a mutex. Here no method awaits,
    so on the loop's one thread none is interrupted halfway: they are called directly, unlocked."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.clients: set[Client] = set()  # gorilla: clients map[*Client]bool
        self.rooms: dict[str, set[Client]] = {}
        self.offsets: dict[str, int] = {}  # per room, the offset of its latest message
        self.closing = False
        # The tutorial's setupEventHandlers: one handler per event type, looked up by routeEvent.
        self.handlers: dict[str, Handler] = {h.__name__: h for h in (join_room, leave_room, send_message)}

    def register(self, client: Client) -> None:  # gorilla: case client := <-h.register
        self.clients.add(client)
        if self.closing:  # accepted as the server began to stop
            client.close(CloseCode.GOING_AWAY, "server shutting down")

    def unregister(self, client: Client) -> None:  # gorilla: case client := <-h.unregister (twice is safe)
        self.clients.discard(client)
        for room in list(client.rooms):
            self.leave(client, room)

    def join(self, client: Client, room: str) -> None:
        client.rooms.add(room)
        self.rooms.setdefault(room, set()).add(client)

    def leave(self, client: Client, room: str) -> None:
        client.rooms.discard(room)
        members = self.rooms.get(room, set())
        members.discard(client)
        if not members:  # forget an empty room: memory stays bounded by the rooms in use.
            self.rooms.pop(room, None)  # Its offsets then start again from 1 (hubbub's never go back).
            self.offsets.pop(room, None)

    def publish(self, room: str, message: Any, sender: str) -> int:
        """gorilla's `case message := <-h.broadcast`: offer the message to every member, never wait."""
        offset = self.offsets[room] = self.offsets.get(room, 0) + 1
        sent = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = {"room": room, "message": message, "from": sender, "sent": sent, "offset": offset}
        text = encode({"type": "new_message", "payload": payload})  # encoded once, for every member
        for member in list(self.rooms.get(room, ())):  # a copy: a full member leaves the set below
            member.send_text(text)
        return offset

    def route_event(self, client: Client, text: str) -> None:
        """The tutorial's routeEvent: decode the envelope, find the type's handler, answer."""
        event_id: str | int | None = None
        try:
            try:
                if too_deep(text):
                    raise ValueError("nested too deep")
                event = json.loads(text)
            except (ValueError, RecursionError):  # RecursionError: JSON nested too deep to decode
                raise EventError(ErrorCode.BAD_JSON, "the frame is not JSON") from None
            if not isinstance(event, dict):
                raise EventError(ErrorCode.BAD_JSON, "the frame is not a JSON object")
            raw_id = event.get("id")
            if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
                raise EventError(ErrorCode.BAD_ENVELOPE, "id must be a string or an integer")
            event_id = raw_id
            kind, payload = event.get("type"), event.get("payload")
            if not isinstance(kind, str) or not isinstance(payload, dict):
                raise EventError(ErrorCode.BAD_ENVELOPE, "type must be a string and payload an object")
            handler = self.handlers.get(kind)
            if handler is None:  # the tutorial: ErrEventNotSupported
                raise EventError(ErrorCode.UNKNOWN_TYPE, f"no handler for {kind!r}")
            try:
                answer = handler(client, payload)
            except Exception as failed:  # a bug in a handler costs one event, not the connection
                if isinstance(failed, EventError):
                    raise
                log.exception("handler failed peer=%s type=%s", client.peer, kind)
                raise EventError(ErrorCode.INTERNAL, "the handler failed") from None
        except EventError as refused:
            error: dict[str, Any] = {"type": "error", "payload": {"code": refused.code, "message": refused.message}}
            client.send(error if event_id is None else {**error, "id": event_id})
            return
        if event_id is not None:  # an event without an id gets no ack
            client.send({"type": "ack", "id": event_id, "payload": answer})

    def close_all(self, code: CloseCode, reason: str) -> None:
        self.closing = True
        for client in list(self.clients):
            client.close(code, reason)

    # The handshake: the tutorial's checkOrigin and gorilla's upgrader, as websockets' process_request.
    def check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Answer `/metrics`; refuse a bad path (404), origin (403) or name (400); None upgrades."""
        url = urlsplit(request.path)
        if url.path == "/metrics":
            body = f"# TYPE hubbub_connections gauge\nhubbub_connections {len(self.clients)}\n"
            response = ws.respond(http.HTTPStatus.OK, body)
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if url.path != "/ws":
            return ws.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        origins, hosts = request.headers.get_all("Origin"), request.headers.get_all("Host")
        origin, host = origins[0] if origins else None, hosts[0] if len(hosts) == 1 else None
        if len(origins) > 1 or not origin_allowed(origin, host, self.options.allowed_origins):
            log.info("refused peer=%s origin=%r: not allowed", peer_of(ws), origins)
            return ws.respond(http.HTTPStatus.FORBIDDEN, "origin not allowed\n")
        names = parse_qs(url.query).get("name")
        if names is not None and not valid_name(names[-1]):
            return ws.respond(http.HTTPStatus.BAD_REQUEST, f"name: 1 to {NAME_MAX} characters, no control ones\n")
        return None

    async def serve_ws(self, ws: ServerConnection) -> None:
        """One connection, from upgrade to goodbye (the tutorial's serveWS, gorilla's serveWs)."""
        client = Client(self, ws)
        self.register(client)
        log.info("conn.open peer=%s name=%r", client.peer, client.name)
        # gorilla: `go client.writePump(); go client.readPump()`. Two tasks here too; the first to
        # end calls client.close(), which wakes this coroutine to cancel the other one and hang up.
        loops = [asyncio.create_task(client.read_loop()), asyncio.create_task(client.write_loop())]
        try:
            await client.done.wait()
        finally:
            client.close()  # if this coroutine was cancelled instead
            for task in loops:
                task.cancel()
            for result in await asyncio.gather(*loops, return_exceptions=True):  # cancelled, and awaited
                if isinstance(result, Exception):  # a bug, not a disconnect: say so, and close with 1011
                    log.error("loop failed peer=%s", client.peer, exc_info=result)
                    client.close_code = CloseCode.INTERNAL_ERROR
            await client.hang_up()
            code = ws.protocol.close_sent.code if ws.protocol.close_sent else ws.close_code  # sent, else received
            log.info("conn.closed peer=%s name=%r code=%s", client.peer, client.name, code, extra={"code": code})


def peer_of(ws: ServerConnection) -> str:
    address = ws.remote_address  # None once the socket is gone
    return f"{address[0]}:{address[1]}" if address else "gone"


# ---- The client: gorilla's client.go and the tutorial's client.go.
class Client:
    """One connection: its send queue (gorilla's `send chan []byte`, the tutorial's `egress`), its
    rooms, and the two loops that move bytes between the socket and the manager."""

    def __init__(self, manager: Manager, ws: ServerConnection) -> None:
        self.manager, self.ws, self.peer = manager, ws, peer_of(ws)
        names = parse_qs(urlsplit(ws.request.path if ws.request else "").query).get("name")
        self.name: str | None = names[-1] if names else None
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=manager.options.send_queue)
        self.rooms: set[str] = set()
        self.closed, self.close_code, self.close_reason = False, CloseCode.NORMAL_CLOSURE, ""
        self.done = asyncio.Event()

    def send(self, event: dict[str, Any]) -> None:
        self.send_text(encode(event))

    def send_text(self, text: str) -> None:
        """Queue a message without waiting: gorilla's `select { case client.send <- message: default: ... }`.
        A full queue means the reader stopped: it is dropped (1013), and the sender moves on; a `put`
        that awaited would let one stalled reader stop the room (docs/tutorial.md, step 2)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("slow peer=%s: %d messages queued, dropped", self.peer, self.queue.qsize())
            self.close(CloseCode.TRY_AGAIN_LATER, "too slow: send queue full")

    async def read_loop(self) -> None:
        """gorilla's readPump: read events until the peer goes; `defer unregister` is the finally."""
        try:
            # websockets enforces the read limit (1009), checks UTF-8 (1007), answers pings and
            # sends its own (ping_interval, ping_timeout: gorilla's SetReadDeadline and pong handler).
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.close(CloseCode.UNSUPPORTED_DATA, "text frames only")
                    return
                self.manager.route_event(self, message)
                # Yield after each event: one socket read may hold hundreds, which recv() hands over
                # without suspending; else a burst read at once lands whole in every member's queue.
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass  # the peer left, or websockets failed the connection: both end the loop
        finally:
            self.close()

    async def write_loop(self) -> None:
        """gorilla's writePump: the only place that writes events to the socket, in queue order."""
        try:
            while True:
                text = await self.queue.get()
                # gorilla sets a write deadline on each write; `send` returns once the bytes fit in
                # websockets' write buffer (32 KiB), so it waits only when the peer stopped reading.
                async with asyncio.timeout(self.manager.options.write_timeout):
                    await self.ws.send(text)
        except TimeoutError:
            log.warning("slow peer=%s: a write waited %s s, dropped", self.peer, self.manager.options.write_timeout)
            self.close(CloseCode.TRY_AGAIN_LATER, "too slow: write timed out")
        except ConnectionClosed:
            pass
        finally:
            self.close()

    def close(self, code: CloseCode = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Leave the manager and end both loops; idempotent, so whichever loop fails first cleans up.

        gorilla's write pump drains `client.send` before its close frame; here (as in hubbub) what
        is queued is dropped: a close behind the backlog would take as long as the backlog."""
        if self.closed:
            return
        self.closed, self.close_code, self.close_reason = True, code, reason
        self.manager.unregister(self)
        self.done.set()

    async def hang_up(self) -> None:
        """The best-effort close: a close frame, the peer's answer within close_timeout, else abort.

        websockets' close() first waits for its write buffer to drain, which a stalled reader never
        does: the timeout bounds that too. Such a reader never sees our frame: abort() drops it with
        websockets' buffer, and closes the socket. Linux keeps what the kernel held (3.9 MB measured)
        as an orphan in FIN-WAIT-1 and trickles it out: a peer that reads on gets it, cut mid-frame,
        then a FIN; one that sends gets a reset. hubbub resets (SO_LINGER 0): the kernel frees it now.
        """
        try:
            async with asyncio.timeout(self.manager.options.close_timeout):
                await self.ws.close(self.close_code, self.close_reason)
        except TimeoutError:
            log.info("close timed out peer=%s code=%s: aborted", self.peer, int(self.close_code))
            self.ws.transport.abort()
        await self.ws.wait_closed()


# ---- The listener: gorilla's main.go (`http.HandleFunc("/ws", ...)`, `ListenAndServe`).
class DeadlineConnection(ServerConnection):
    """websockets' connection, with a deadline on the closes it starts itself (on a peer's close frame,
    on 1007 or 1009): its `close_timeout` runs only while a coroutine awaits a send or a close, and the
    read loop awaits neither; a peer that never hangs up would stay. So: abort at the deadline."""

    deadline_set = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.close_deadline is not None and not self.deadline_set:
            self.deadline_set = True
            self.loop.call_at(self.close_deadline, self.transport.abort)


async def serve(manager: Manager, stop: asyncio.Event, ready: Callable[[int], object] | None = None) -> None:
    """Serve until `stop` is set, then close every connection with 1001; `ready(port)` once listening."""
    options = manager.options
    server = await listen(
        manager.serve_ws,
        options.host,
        options.port,
        process_request=manager.check_request,
        max_size=options.max_message_size,
        ping_interval=options.ping_interval or None,
        ping_timeout=options.ping_timeout or None,
        close_timeout=options.close_timeout,
        create_connection=DeadlineConnection,
        compression=None,  # no permessage-deflate: hubbub has none, and it costs memory per connection
    )
    port = server.sockets[0].getsockname()[1]
    log.info("listening on ws://%s:%d/ws", options.host, port)
    if ready is not None:
        ready(port)
    try:
        await stop.wait()
    finally:
        server.close(close_connections=False)  # stop accepting; handshakes under way get 503
        manager.close_all(CloseCode.GOING_AWAY, "server shutting down")
        await server.wait_closed()  # every connection handler has returned: hung up within close_timeout
        log.info("stopped")
