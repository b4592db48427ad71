"""A misbehaving WebSocket client, for the experiments of docs/learn/experiments.md.

It speaks just enough of RFC 6455 on a bare socket to do what a well-behaved
client library never would, and says what it saw. Run from the repository root:

    python examples/learn/peer.py MODE [--url ws://127.0.0.1:8000/ws] [--room lobby] [--size N] [--count N]

modes:
  vanish   join, then die by SIGKILL: no close frame; the kernel sends a FIN
  reset    join, then close with SO_LINGER 0: no close frame; the kernel sends an RST
  silent   join, then neither read nor write: no pong to any ping (the half-open peer, as the server sees it)
  stall    join with a 4 KiB receive buffer, then never read (the stalled reader)
  flood    join, then send --count messages to the room at full speed, reading everything back
  big      send one text message of --size bytes (past --max-message-size: 1009)
  binary   send one binary frame (1003)
  origin   open the handshake with Origin: http://evil.example and print the answer's status line
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import threading
import time
from urllib.parse import urlsplit

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: masked, as RFC 6455 requires of a client."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def event(type_: str, payload: dict[str, object], id_: int | None = None) -> bytes:
    body: dict[str, object] = {"type": type_, "payload": payload}
    if id_ is not None:
        body["id"] = id_
    return frame(TEXT, json.dumps(body).encode())


def connect(url: str, origin: str | None = None, rcvbuf: int = 0) -> tuple[socket.socket, bytes]:
    """Open the socket, send the upgrade request, return the socket and the answer's status line."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connecting, so that the window offered to the server is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, port))
    lines = [
        f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return sock, answer.split(b"\r\n", 1)[0]


def drain(sock: socket.socket, seconds: float) -> None:
    """Read and forget whatever arrives for `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pass
    sock.settimeout(None)


def read_until_closed(sock: socket.socket, counts: dict[str, int]) -> None:
    """Read frames until the server closes; count them by type and report the close."""
    buffer = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                print(f"peer: the server closed TCP (FIN) after {counts}")
                return
            buffer += chunk
            while len(buffer) >= 2:
                n, at = buffer[1] & 0x7F, 2
                if n == 126:
                    n, at = struct.unpack("!H", buffer[2:4])[0], 4
                elif n == 127:
                    n, at = struct.unpack("!Q", buffer[2:10])[0], 10
                if len(buffer) < at + n:
                    break
                opcode, payload, buffer = buffer[0] & 0x0F, buffer[at : at + n], buffer[at + n :]
                if opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    print(f"peer: close frame {code} {payload[2:].decode(errors='replace')!r} after {counts}")
                    sock.sendall(frame(CLOSE, payload[:2]))
                elif opcode == TEXT:
                    kind = str(json.loads(payload).get("type"))
                    if kind == "error":
                        kind = "error " + str(json.loads(payload)["payload"].get("code"))
                    counts[kind] = counts.get(kind, 0) + 1
    except ConnectionResetError:
        print(f"peer: connection reset (RST) after {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["vanish", "reset", "silent", "stall", "flood", "big", "binary", "origin"])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws?name=peer")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    if args.mode == "origin":
        sock, status = connect(args.url, origin="http://evil.example")
        print("peer:", status.decode(errors="replace"))
        return
    sock, status = connect(args.url, rcvbuf=4096 if args.mode == "stall" else 0)
    print(f"peer: {status.decode(errors='replace')} from {sock.getsockname()[0]}:{sock.getsockname()[1]}")
    sock.sendall(event("join_room", {"room": args.room}, 1))
    if args.mode == "vanish":
        drain(sock, 0.5)  # unread bytes at exit would make the kernel send an RST instead of a FIN
        os.kill(os.getpid(), signal.SIGKILL)
    elif args.mode == "reset":
        time.sleep(0.5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        print("peer: reset")
    elif args.mode in ("silent", "stall"):
        print("peer: reading nothing from now on; Ctrl-C to quit")
        threading.Event().wait()
    elif args.mode == "flood":
        counts: dict[str, int] = {}
        reader = threading.Thread(target=read_until_closed, args=(sock, counts), daemon=True)
        reader.start()
        message = "x" * min(args.size, 1000)
        started = time.monotonic()
        try:
            for _ in range(args.count):
                sock.sendall(event("send_message", {"room": args.room, "message": message}))
        except (BrokenPipeError, ConnectionResetError):
            print("peer: the server stopped taking messages")
        while reader.is_alive() and counts.get("new_message", 0) < args.count and time.monotonic() - started < 5:
            time.sleep(0.05)
        if reader.is_alive():  # everything came back, or the server kept the connection: say so, and leave
            print(f"peer: {args.count} sent in {time.monotonic() - started:.2f} s, got back {counts}")
            sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
            reader.join(timeout=2)
    else:
        payload = b"x" * args.size
        sock.sendall(frame(BINARY, payload) if args.mode == "binary" else frame(TEXT, payload))
        read_until_closed(sock, {})


if __name__ == "__main__":
    main()
