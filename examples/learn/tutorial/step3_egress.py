"""Step 3: the egress queue. One writer per connection, fed by a bounded queue; a full queue drops it.

The Go tutorial's fix for the panic: `egress chan []byte` and a `writeMessages` goroutine, the only
one that writes to the connection. Here it fixes what step 2 broke: a read loop never waits for
another client, it puts the message on each client's queue without waiting (`put_nowait`, gorilla's
`select ... default`); a client whose queue is full stopped reading and is dropped (close 1013), and
everyone else goes on. Two coroutines per connection; whichever ends first ends the other.

    python -m examples.learn.tutorial.step3_egress --port 8080 [--egress 256]
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
        self.egress: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=manager.egress)  # the Go `egress` channel
        self.done = asyncio.Event()  # set by whichever loop ends first
        self.code, self.reason = 1000, ""

    def send(self, message: str | bytes) -> None:
        """Offer a message, never wait: a full queue means this client stopped reading."""
        if self.done.is_set():
            return
        try:
            self.egress.put_nowait(message)
        except asyncio.QueueFull:
            print(f"dropped {self.peer}: {self.egress.qsize()} messages waiting, it stopped reading", flush=True)
            self.code, self.reason = 1013, "too slow"
            self.done.set()  # serve_ws hangs up; the sender does not wait for that

    async def read_messages(self) -> None:
        try:
            async for message in self.ws:
                for other in list(self.manager.clients):
                    other.send(message)
                await asyncio.sleep(0)  # let the write loops run between messages of one socket read
        except ConnectionClosed:
            pass
        finally:
            self.done.set()

    async def write_messages(self) -> None:
        """The only writer of this connection (the Go `writeMessages`), in queue order."""
        try:
            while True:
                await self.ws.send(await self.egress.get())
        except ConnectionClosed:
            pass
        finally:
            self.done.set()


class Manager:
    client_type = Client  # what serve_ws makes of a connection (step 4 makes one that reads events)

    def __init__(self, egress: int) -> None:
        self.clients: set[Client] = set()
        self.egress = egress

    async def serve_ws(self, ws: ServerConnection) -> None:
        client = self.client_type(self, ws)
        self.clients.add(client)
        loops = [asyncio.create_task(client.read_messages()), asyncio.create_task(client.write_messages())]
        try:
            await client.done.wait()
        finally:
            self.clients.discard(client)  # unregistered first: nobody queues for it any more
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await hang_up(ws, client.code, client.reason)
            code = ws.protocol.close_sent.code if ws.protocol.close_sent else ws.close_code  # ours, else theirs
            print(f"unregistered {client.peer}: close {code}", flush=True)


async def hang_up(ws: ServerConnection, code: int, reason: str) -> None:
    """A best-effort close: our close frame and the peer's answer within 2 s, else abort the socket.
    (A stalled reader never takes the frame: close() waits for the buffers to drain, which they never do.)"""
    try:
        async with asyncio.timeout(2):
            await ws.close(code, reason)
    except TimeoutError:
        ws.transport.abort()


async def main(port: int, egress: int) -> None:
    manager = Manager(egress)
    async with serve(manager.serve_ws, "127.0.0.1", port, compression=None):
        print(f"listening on ws://127.0.0.1:{port}/ws", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--egress", type=int, default=256, help="messages a client's queue holds (gorilla: 256)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.egress))
