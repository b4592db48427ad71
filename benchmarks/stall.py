"""A member that joins a room and then stops reading (scenario F4).

It answers nothing and reads nothing after the join, so the server's outbox
for it fills up; hubbub should drop it (1013) without slowing anyone else.
Run next to wsload: python benchmarks/stall.py ws://127.0.0.1:8000/ws bench-0 30
"""

from __future__ import annotations

import json
import socket
import sys
import time

from websockets.sync.client import connect


def main(url: str, room: str, seconds: float) -> None:
    with connect(url, max_queue=1) as ws:
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws.send(json.dumps({"type": "join_room", "payload": {"room": room}}))
        time.sleep(seconds)  # read nothing


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
