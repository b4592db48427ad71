"""Step 1: a manager and its clients, reading only (the Go tutorial's first manager.go and client.go).

The Manager holds the set of clients. `serve_ws` (the Go `serveWS`) registers each new connection,
runs its read loop (the Go `readMessages` goroutine: here a coroutine, one per connection, all on
one thread) and unregisters it when the loop ends, however it ends. Nothing is written back yet.

    python -m examples.learn.tutorial.step1_manager --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Client:
    """One connection (the Go `Client`: the connection and its manager)."""

    def __init__(self, manager: Manager, ws: ServerConnection) -> None:
        self.manager, self.ws = manager, ws
        self.peer = "{}:{}".format(*ws.remote_address[:2])

    async def read_messages(self) -> None:
        """Print every message until the peer goes (the Go `readMessages` loop)."""
        try:
            async for message in self.ws:
                print(f"{self.peer} says {message!r}", flush=True)
        except ConnectionClosed:
            pass  # gone without a clean close: the loop ends all the same


class Manager:
    """Every client (the Go `Manager` with its `ClientList`). No lock: one thread, and no method awaits."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()

    def add_client(self, client: Client) -> None:
        self.clients.add(client)
        print(f"registered {client.peer} ({len(self.clients)} clients)", flush=True)

    def remove_client(self, client: Client) -> None:
        self.clients.discard(client)
        print(f"unregistered {client.peer} ({len(self.clients)} clients)", flush=True)

    async def serve_ws(self, ws: ServerConnection) -> None:
        client = Client(self, ws)
        self.add_client(client)
        try:
            await client.read_messages()
        finally:
            self.remove_client(client)


async def main(port: int) -> None:
    async with serve(Manager().serve_ws, "127.0.0.1", port):
        print(f"listening on ws://127.0.0.1:{port}/ws", flush=True)
        await asyncio.get_running_loop().create_future()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().port))
