"""Step 2, the UNSAFE version: every read loop writes straight to every client's socket.

The Go tutorial's first broadcast, `for wsclient := range c.manager.clients { wsclient.connection.
WriteMessage(...) }` from each client's read goroutine, panics: "concurrent write to websocket
connection". In asyncio the same code does not panic, and no frame is torn: one thread runs it, and
websockets' `send()` hands each frame whole to the transport before it waits. What breaks instead:

- awaited (the default): `send()` waits while the peer's buffers are full. A client that stops
  reading stops the read loop of every client that writes to it: one stalled reader freezes the room.
- `--fire-and-forget`: a task per send, never waited for. Nothing stops any more, but nothing is
  bounded either: what a stalled reader does not take piles up in the server's memory, for ever.

    python -m examples.learn.tutorial.step2_unsafe_broadcast --port 8080 [--fire-and-forget]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Client:
    def __init__(self, manager: Manager, ws: ServerConnection) -> None:
        self.manager, self.ws = manager, ws
        self.peer = "{}:{}".format(*ws.remote_address[:2])

    async def read_messages(self) -> None:
        try:
            async for message in self.ws:
                for other in list(self.manager.clients):  # UNSAFE: writers in every read loop
                    if self.manager.fire_and_forget:
                        task = asyncio.create_task(other.ws.send(message))
                        self.manager.sends.add(task)  # kept, or the loop may collect it half done
                        task.add_done_callback(self.manager.forget)
                    else:
                        await other.ws.send(message)  # waits as long as `other` does not read
        except ConnectionClosed:
            pass


class Manager:
    def __init__(self, fire_and_forget: bool) -> None:
        self.clients: set[Client] = set()
        self.fire_and_forget = fire_and_forget
        self.sends: set[asyncio.Task[None]] = set()

    async def serve_ws(self, ws: ServerConnection) -> None:
        client = Client(self, ws)
        self.clients.add(client)
        try:
            await client.read_messages()
        finally:
            self.clients.discard(client)

    def forget(self, task: asyncio.Task[None]) -> None:
        self.sends.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a send to a client that left fails, and that is fine

    async def report(self) -> None:
        """Once a second, what waits in the server's memory for the clients, when it changed."""
        last = ""
        while True:
            await asyncio.sleep(1)
            held = sum(c.ws.transport.get_write_buffer_size() for c in self.clients)
            line = f"memory: {held // 1024} KiB unsent in buffers, {len(self.sends)} sends waiting"
            if line != last and (held or self.sends):
                print(line, flush=True)
            last = line


async def main(port: int, fire_and_forget: bool) -> None:
    manager = Manager(fire_and_forget)
    async with serve(manager.serve_ws, "127.0.0.1", port, compression=None):
        print(f"listening on ws://127.0.0.1:{port}/ws", flush=True)
        await manager.report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fire-and-forget", action="store_true", help="a task per send, never awaited")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.fire_and_forget))
