"""A member that joins a room and then stops reading (scenario F4).

It answers nothing and reads nothing after the join, so the server's outbox
for it fills up; hubbub should drop it (1013) without slowing anyone else.
Run next to wsload, in wsload's dialect (events, or socketio for
python-socketio):

    python benchmarks/stall.py ws://127.0.0.1:8000/ws bench-0 30 [events|socketio]
"""

from __future__ import annotations

import json
import socket
import sys
import time

from websockets.exceptions import InvalidHandshake
from websockets.sync.client import ClientConnection, connect


def join_events(ws: ClientConnection, room: str) -> None:
    ws.send(json.dumps({"type": "join_room", "payload": {"room": room}}))


def join_socketio(ws: ClientConnection, room: str) -> None:
    """Socket.IO v4 over a bare WebSocket: engine.io open, namespace connect, then the event."""
    ws.recv(timeout=10)  # engine.io "0{...}" open packet
    ws.send("40")
    ws.recv(timeout=10)  # "40{...}": connected to the default namespace
    ws.send("42" + json.dumps(["join_room", {"room": room}]))


def main(url: str, room: str, seconds: float, dialect: str = "events") -> int:
    if dialect == "socketio":
        url += ("&" if "?" in url else "?") + "EIO=4&transport=websocket"
    try:
        with connect(url, max_queue=1) as ws:
            ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            (join_socketio if dialect == "socketio" else join_events)(ws, room)
            time.sleep(seconds)  # read nothing
    except (OSError, InvalidHandshake) as exc:
        print(f"stall.py: could not join {room!r} at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), *sys.argv[4:5]))
