"""A careful chat hub on `websockets`, for comparison: a queue and a writer task per connection.

It speaks the same events as hubbub (join_room, send_message -> new_message with
offsets), encodes each event once per publish, and drops a client whose queue
is full. What it does not do is hubbub's batching: each recipient's writer task
wakes up for every message. Run: python benchmarks/servers/websockets_server.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

ROOMS: dict[str, set[asyncio.Queue[str]]] = {}
OFFSETS: dict[str, int] = {}


async def writer(ws: ServerConnection, queue: asyncio.Queue[str]) -> None:
    while True:
        await ws.send(await queue.get())


async def handler(ws: ServerConnection) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1024)
    joined: set[str] = set()
    task = asyncio.create_task(writer(ws, queue))
    try:
        await _read(ws, queue, joined)
    except ConnectionClosed:
        pass  # a client that leaves is normal life
    finally:
        task.cancel()
        for room in joined:
            ROOMS.get(room, set()).discard(queue)


async def _read(ws: ServerConnection, queue: asyncio.Queue[str], joined: set[str]) -> None:
    async for raw in ws:
        event: dict[str, Any] = json.loads(raw)
        payload = event.get("payload", {})
        room = payload.get("room")
        if event.get("type") == "join_room":
            ROOMS.setdefault(room, set()).add(queue)
            joined.add(room)
        elif event.get("type") == "send_message" and room in joined:
            OFFSETS[room] = offset = OFFSETS.get(room, 0) + 1
            sent = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            body = {"room": room, "message": payload.get("message"), "from": payload.get("from", "anonymous")}
            frame = json.dumps({"type": "new_message", "payload": {**body, "sent": sent, "offset": offset}})
            for q in list(ROOMS.get(room, ())):
                try:
                    q.put_nowait(frame)
                except asyncio.QueueFull:  # a slow client: drop it
                    ROOMS[room].discard(q)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=65536, compression=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    uvloop.run(main(parser.parse_args().port))
