"""The same chat events on python-socketio (ASGI, on uvicorn), for comparison.

Rooms are Socket.IO rooms; `send_message` emits `new_message` to the room.
Run: python benchmarks/servers/socketio_server.py --port 8002
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio, socketio_path="ws")
offsets: dict[str, int] = {}


@sio.on("join_room")
async def join_room(sid: str, payload: dict[str, Any]) -> None:
    await sio.enter_room(sid, payload["room"])


@sio.on("send_message")
async def send_message(sid: str, payload: dict[str, Any]) -> None:
    room = payload["room"]
    offsets[room] = offset = offsets.get(room, 0) + 1
    sent = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    await sio.emit(
        "new_message",
        {
            "room": room,
            "message": payload["message"],
            "from": payload.get("from", "anonymous"),
            "sent": sent,
            "offset": offset,
        },
        room=room,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8002)
    uvicorn.run(
        app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning", loop="uvloop", ws="websockets"
    )
