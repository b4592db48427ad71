"""A webhook endpoint that answers slowly, for measuring that webhooks never slow delivery.

    python3 benchmarks/slow_webhook.py --port 9009 --delay 2

Every request is read whole and answered 200 after `--delay` seconds (0: at
once; a negative delay: never, the connection is held until the client gives
up). It counts what it received and prints the count when stopped (SIGTERM or
SIGINT), so a run can say how many events reached the app while it was slow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys


class Endpoint:
    """The slow endpoint's state: requests received and answered."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0
        self.answered = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                self.received += 1
                if self.delay < 0:
                    await asyncio.Event().wait()  # never: the client's timeout ends it
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9009)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before each answer; negative: never")
    args = parser.parse_args()
    endpoint = Endpoint(args.delay)
    server = await asyncio.start_server(endpoint.serve, "127.0.0.1", args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        print(f"received={endpoint.received} answered={endpoint.answered}", flush=True)
        sys.stderr.flush()
        # Requests still held: end now rather than cancel each (Python 3.11 reports every cancelled
        # stream handler as an error); a measuring tool has nothing else to clean up.
        os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
