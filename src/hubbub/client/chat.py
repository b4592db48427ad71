"""`hubbub chat`: a terminal chat on `hubbub.client.client`, for people and for trying things out.

Lines typed are sent to the current room; a line starting with `/` is a
command (`/help` lists them, `//text` sends `/text`). Every command does what
it says or answers in words: an unknown one, one missing its room, a room
name the hub would refuse. Messages print as `HH:MM:SS #room name: text`,
notices as `* ...`. The connection's life shows: `* disconnected: why`,
`* reconnected`; a line typed while disconnected is kept (up to
`MAX_WAITING`) and sent once the rooms are joined again. End of input
(Ctrl-D) or `/quit` quits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import threading
from typing import Any, TextIO

from hubbub.client.client import Client, RequestFailed
from hubbub.client.errors import carries_credential, shown, websocket_url
from hubbub.protocol.events import valid_room

MAX_WAITING = 100
"""Lines typed while disconnected that are kept for sending after the reconnect; more are refused."""

COMMANDS: dict[str, tuple[str, str]] = {
    "/join": ("ROOM", "join ROOM and talk there"),
    "/leave": ("[ROOM]", "leave ROOM (default: the room you talk in)"),
    "/room": ("[ROOM]", "talk in ROOM, one you joined; alone: where you talk and the rooms you are in"),
    "/who": ("[ROOM]", "who is in ROOM (default: the room you talk in)"),
    "/history": ("[ROOM]", "the last 20 messages of ROOM (default: the room you talk in)"),
    "/help": ("", "this list"),
    "/quit": ("", "leave the chat (Ctrl-D too)"),
}
"""Each command, its argument and what it does: `/help` prints this table."""

ROOM_RULE = "1 to 128 letters, digits and _ - . : @ (no spaces)"

ERROR_WORDS = {
    "rate_limited": "slow down: the hub takes about 20 messages a second",
    "forbidden": "not allowed",
    "limit_exceeded": "a limit of the hub",
    "not_in_room": "you are not in that room",
}


def render(event: dict[str, Any]) -> str | None:
    """One line for an event, or None for events a person does not need to see."""
    p = event.get("payload") or {}
    kind = event.get("type")
    if kind == "new_message":
        try:
            when = dt.datetime.fromisoformat(p["sent"].replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
        except (KeyError, ValueError):
            when = "--:--:--"
        message = p.get("message")
        text = message if isinstance(message, str) else repr(message)
        return f"{when} #{p.get('room')} {p.get('from')}: {text}"
    if kind == "member_joined":
        return f"* {p.get('name')} joined #{p.get('room')}"
    if kind == "member_left":
        return f"* {p.get('name')} left #{p.get('room')}"
    if kind == "room_reset":
        return f"* some messages of #{p.get('room')} are no longer available"
    if kind == "disconnected":
        return f"* disconnected: {p.get('reason')}; reconnecting (lines you type are kept and sent after)"
    if kind == "reconnected":
        return "* reconnected"
    return None


def help_text() -> str:
    """What `/help` prints: every command on its line."""
    width = max(len(f"{c} {a}".strip()) for c, (a, _) in COMMANDS.items())
    rows = [f"*   {f'{c} {a}'.strip():<{width}}  {what}" for c, (a, what) in COMMANDS.items()]
    return "\n".join(["* commands:", *rows, "* any other line is sent to the room you talk in (//text sends /text)"])


def room_problem(room: str) -> str | None:
    """Why `room` cannot be a room name, in words (never the hub's regular expression), or None."""
    if valid_room(room):
        return None
    return f"{room!r} is not a room name: use {ROOM_RULE}"


def _lines(stream: TextIO) -> asyncio.Queue[str | None]:
    """Lines of `stream`, read by a daemon thread (a blocked read never holds up the exit); None at the end."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def put(line: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        except RuntimeError:  # the chat has ended and its loop is closed: nobody reads any more
            return False
        return True

    def read() -> None:
        for line in iter(stream.readline, ""):
            if not put(line.rstrip("\n")):
                return
        put(None)

    threading.Thread(target=read, name="hubbub-chat-stdin", daemon=True).start()
    return queue


class Chat:
    """One chat session: the rooms joined, the room talked in, the lines waiting for a connection."""

    def __init__(self, client: Client, name: str | None, out: TextIO) -> None:
        self.client = client
        self.name = name
        """The name the chat is known by, None when the hub takes it from a token or ticket: then
        the chat's own joins print, and say which name the hub gave."""
        self.out = out
        self.rooms: list[str] = []
        """Rooms joined, in the order joined."""
        self.current: str | None = None
        self.waiting: list[tuple[str, str, bool]] = []
        """Lines to send, in the order typed: (room, text, typed while disconnected). They wait
        here while the connection is down, and are sent by `flush` in order once it is back."""
        self._sending = asyncio.Lock()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        self.say(f"* {text}")

    async def show(self) -> None:
        """Print events until the client closes; send the waiting lines after each reconnect."""
        async for event in self.client:
            kind = event.get("type")
            if kind in ("member_joined", "member_left") and (event.get("payload") or {}).get("name") == self.name:
                continue  # our own joins and leaves: the command already said so
            line = render(event)
            if line is not None:
                self.say(line)
            if kind == "reconnected" and self.waiting:
                await self.flush()

    async def flush(self) -> None:
        """Send the waiting lines in order while connected; a drop leaves the rest for the next reconnect."""
        async with self._sending:
            sent = 0
            while self.waiting and self.client.connected:
                room, text, offline = self.waiting.pop(0)
                if await self._send(room, text) and offline:
                    sent += 1
            if sent:
                self.notice(f"sent {sent} line{'s' if sent != 1 else ''} typed while disconnected")

    async def _send(self, room: str, text: str) -> bool:
        try:
            await self.client.send(room, text)
        except RequestFailed as exc:
            self.notice(f"not sent to #{room}: {self.words(exc)}")
        except ConnectionError:
            self.notice(f"the connection dropped before the hub confirmed your line to #{room}: it may not be sent")
        except TimeoutError:
            self.notice(f"no answer from the hub for your line to #{room}: it may not be sent")
        else:
            return True
        return False

    @staticmethod
    def words(exc: RequestFailed) -> str:
        known = ERROR_WORDS.get(exc.code)
        return f"{known} ({exc.message})" if known and exc.message else known or exc.message or exc.code

    async def join(self, room: str) -> None:
        if (problem := room_problem(room)) is not None:
            self.notice(problem)
            return
        if room in self.rooms:
            self.current = room
            self.notice(f"already in #{room}; talking there now")
            return
        await self.client.join(room)
        self.rooms.append(room)
        self.current = room
        self.notice(f"joined #{room}; talking there now")

    async def leave(self, room: str) -> None:
        if room not in self.rooms:
            self.notice(f"you are not in #{room}" + (f" (you are in {self._list()})" if self.rooms else ""))
            return
        await self.client.leave(room)
        self.rooms.remove(room)
        if self.current == room:
            self.current = self.rooms[-1] if self.rooms else None
        where = f"talking in #{self.current}" if self.current else "you are in no room: /join ROOM"
        self.notice(f"left #{room}; {where}")

    def _list(self) -> str:
        return ", ".join(f"#{r}" for r in self.rooms)

    def _room_arg(self, arg: str, command: str) -> str | None:
        """The room a command is about: its argument, else the current room; None (said why) if neither."""
        room = arg or self.current
        if room is None:
            self.notice(f"you are in no room: {command} ROOM, or /join ROOM first")
        elif (problem := room_problem(room)) is not None:
            self.notice(problem)
            return None
        return room

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False to quit."""
        if line.startswith("/") and not line.startswith("//"):
            word, _, arg = line.partition(" ")
            return await self.command(word, arg.strip())
        text = line[1:] if line.startswith("//") else line
        if not text.strip():
            return True
        if self.current is None:
            self.notice("you are in no room: /join ROOM first")
        elif not self.client.connected:
            if len(self.waiting) >= MAX_WAITING:
                self.notice(f"not connected, and {MAX_WAITING} lines already wait: this one is not kept")
            else:
                self.waiting.append((self.current, text, True))
                n = len(self.waiting)
                self.notice(f"not connected: this line goes to #{self.current} after the reconnect ({n} waiting)")
        else:  # behind any line still waiting, so that lines go out in the order typed
            self.waiting.append((self.current, text, False))
            await self.flush()
        return True

    async def command(self, word: str, arg: str) -> bool:
        if word == "/quit":
            return False
        if word == "/help":
            self.say(help_text())
            return True
        if word not in COMMANDS:
            self.notice(f"unknown command {word}; /help lists the commands (//text sends /text as a message)")
            return True
        if word == "/room":
            if not arg:
                where = f"talking in #{self.current}" if self.current else "in no room"
                self.notice(f"{where}; joined: {self._list() or 'none'}; /room ROOM switches, /join ROOM joins")
            elif arg in self.rooms:
                self.current = arg
                self.notice(f"talking in #{arg}")
            else:
                self.notice(room_problem(arg) or f"you are not in #{arg}: /join {arg} first")
            return True
        if word == "/join" and not arg:
            self.notice(f"which room? /join ROOM, where ROOM is {ROOM_RULE}")
            return True
        if not self.client.connected:
            self.notice(f"not connected: {word} needs the hub; try again once reconnected")
            return True
        try:
            await self.hub_command(word, arg)
        except RequestFailed as exc:
            self.notice(f"{word} {arg}: {self.words(exc)}".replace("  ", " "))
        except (ConnectionError, TimeoutError):
            self.notice(f"{word}: the connection dropped before the hub answered; try again once reconnected")
        return True

    async def hub_command(self, word: str, arg: str) -> None:
        """The commands that ask the hub something."""
        if word == "/join":
            await self.join(arg)
        elif word == "/leave":
            room = self._room_arg(arg, "/leave")
            if room is not None:
                await self.leave(room)
        elif word == "/who":
            room = self._room_arg(arg, "/who")
            if room is not None:
                members = await self.client.presence(room)
                names = ", ".join(f"{m['name']} ({m['connections']})" for m in members)
                self.notice(f"in #{room}: {names or 'nobody'}")
        elif word == "/history":
            room = self._room_arg(arg, "/history")
            if room is not None:
                page = await self.client.history(room, limit=20)
                messages = page["messages"]
                n = len(messages)
                self.notice(
                    f"the last {n} message{'s' if n != 1 else ''} of #{room}" if n else f"no messages in #{room}"
                )
                for payload in messages:
                    self.say(render({"type": "new_message", "payload": payload}) or "")


async def run(
    url: str,
    room: str,
    name: str,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    ca: str | None = None,
    connect_timeout: float = 5.0,
) -> int:
    """Chat until `/quit` or the end of input; `ca` is a PEM file to trust for a `wss://` URL.
    A `token`, `ticket` or `otp` in the URL is never printed, and then the hub names the chat
    (`name` is ignored).

    A page's URL (`http://host:port/`) is taken for its hub's (`ws://host:port/ws`). Raises
    `InvalidURL` for any other URL that is not ws:// or wss://, `HubUnreachable` when no connection
    is made within `connect_timeout`, `HandshakeRefused` when the hub refuses it; returns 1 when the
    client gives up later (a refusal on reconnect), else 0.
    """
    if (problem := room_problem(room)) is not None:
        raise ValueError(f"--room: {problem}")
    hub = websocket_url(url)
    client = Client(hub, name, ca=ca, connect_timeout=connect_timeout)
    if hub != url:
        print(f"* {shown(url)} is the hub's page; chatting on {shown(hub)}", file=out, flush=True)
    await client.start()
    named_by_hub = carries_credential(hub)
    chat = Chat(client, None if named_by_hub else name, out)
    printer: asyncio.Task[None] | None = None
    try:
        who = "by the name your credential gives (the hub decides it)" if named_by_hub else f"as {name}"
        chat.notice(f"connected to {shown(hub)} {who}; /help lists the commands")
        await chat.join(room)
        printer = asyncio.get_running_loop().create_task(chat.show())
        lines = _lines(stdin)
        while True:
            getting = asyncio.ensure_future(lines.get())
            await asyncio.wait({getting, printer}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():  # the client gave up: say why and stop
                getting.cancel()
                failure = printer.exception() if not printer.cancelled() else None
                chat.notice(f"giving up: {failure or client.failure}")
                return 1
            line = getting.result()
            if line is None or not await chat.handle(line):
                break
        await asyncio.sleep(0.2)  # let the last echoes print
    finally:
        if printer is not None:
            printer.cancel()
        await client.close()
    return 0
