"""`hubbub chat`: a terminal chat on `hubbub.client`, for people and for trying things out.

Lines typed are sent to the current room. Commands: `/join ROOM`, `/leave ROOM`,
`/room ROOM` (switch), `/who` (presence), `/history`, `/quit`. Messages print as
`HH:MM:SS #room name: text`. End of input quits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any, TextIO

from hubbub.client import Client, RequestFailed


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
    return None


async def _lines(stream: TextIO) -> Any:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            return
        yield line.rstrip("\n")


async def run(
    url: str, room: str, name: str, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, ca: str | None = None
) -> int:
    """Chat until `/quit` or the end of input; `ca` is a PEM file to trust for a `wss://` URL."""
    client = Client(url, name, ca=ca)
    await client.start()
    current = room
    await client.join(room)
    print(f"* connected to {url} as {name}, in #{room}", file=out, flush=True)

    async def show() -> None:
        async for event in client:
            line = render(event)
            if line is not None:
                print(line, file=out, flush=True)

    printer = asyncio.get_running_loop().create_task(show())
    try:
        async for line in _lines(stdin):
            word, _, arg = line.partition(" ")
            try:
                if word == "/quit":
                    break
                if word == "/join" and arg:
                    await client.join(arg)
                    current = arg
                elif word == "/leave" and arg:
                    await client.leave(arg)
                elif word == "/room" and arg:
                    current = arg
                elif word == "/who":
                    members = await client.presence(current)
                    names = ", ".join(f"{m['name']} ({m['connections']})" for m in members)
                    print(f"* in #{current}: {names}", file=out, flush=True)
                elif word == "/history":
                    page = await client.history(current, limit=20)
                    for payload in page["messages"]:
                        print(render({"type": "new_message", "payload": payload}), file=out, flush=True)
                elif line:
                    await client.send(current, line)
            except (RequestFailed, ConnectionError, TimeoutError) as exc:
                print(f"! {exc}", file=out, flush=True)
        await asyncio.sleep(0.2)  # let the last echoes print
    finally:
        printer.cancel()
        await client.close()
    return 0
