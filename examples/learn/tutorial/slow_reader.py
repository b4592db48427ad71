"""Three clients in one room, one of which stops reading: does the one that keeps up get everything?

A stalled reader (a 4 KiB receive buffer, and it never reads), a reader that keeps up, and a sender
that sends --count messages of --size bytes, 16 in flight (it reads its own copies as they come
back). Once all is delivered, or nothing moved for 3 s, it prints what they saw, and stays connected
--linger seconds more (2) while the server's log says what it did and holds. For steps 2 and 3 of
docs/tutorial.md (plain text messages):

    python -m examples.learn.tutorial.slow_reader --url ws://127.0.0.1:8080/ws
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


async def stalled(url: str) -> ClientConnection:
    """Connect with a tiny receive buffer; websockets then stops reading after one message (max_queue=1)."""
    where = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (where.hostname, where.port))
    return await connect(url, sock=sock, max_queue=1, ping_interval=None)


def where(client: ClientConnection) -> str:
    return "{}:{}".format(*client.local_address[:2])


async def main(url: str, count: int, size: int, seconds: float, linger: float) -> None:
    stuck = await stalled(url)
    reader, sender = await connect(url, ping_interval=None), await connect(url, ping_interval=None)
    print(f"stalled reader {where(stuck)}, reader {where(reader)}, sender {where(sender)}", flush=True)
    await asyncio.sleep(0.2)  # all three registered before the first message
    got, sent = {reader: 0, sender: 0}, 0
    window = asyncio.Semaphore(16)  # the sender keeps 16 messages in flight: it reads its own copies too

    async def read(client: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in client:
                got[client] += 1
                if client is sender:
                    window.release()

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):
            for i in range(count):
                await window.acquire()
                await sender.send(f"{i:08d}".ljust(size, "."))
                sent += 1

    tasks = [asyncio.create_task(read(reader)), asyncio.create_task(read(sender)), asyncio.create_task(send())]
    start = last_change = time.monotonic()
    seen = (0, 0)
    while (sent, got[reader]) != (count, count) and time.monotonic() - last_change < 3:  # done, or stuck
        await asyncio.sleep(0.1)
        if (sent, got[reader]) != seen:
            seen, last_change = (sent, got[reader]), time.monotonic()
        if time.monotonic() - start > seconds:
            break
    print(f"the sender sent {sent} of {count} messages of {size} bytes", flush=True)
    print(f"the reader that keeps up got {got[reader]} of {count}", flush=True)
    await asyncio.sleep(linger)  # connected a little longer: the server's log shows what it holds meanwhile
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in (stuck, reader, sender):  # hang up at once: a server stuck in a send would not answer a close
        client.transport.abort()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=30.0, help="give up after this long")
    parser.add_argument("--linger", type=float, default=2.0, help="seconds to stay connected after the report")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.count, args.size, args.seconds, args.linger))
