"""Step 5: heartbeats, a read limit and an origin check: step 4's manager, served with three rules.

In Go each is code of yours; in `websockets` each is an argument of `serve()`:

- heartbeats (the tutorial's `pingInterval`, `pongWait`, `SetPongHandler`): a ping every
  --ping-interval seconds; a peer whose pong does not come within --ping-timeout is dropped (1011).
- a read limit (`SetReadLimit(512)`): a message past --max-message-size bytes closes with 1009.
- an origin check (`checkOrigin`): a browser page from an origin not in --allowed-origin gets 403
  before any WebSocket exists. A client that sends no Origin (not a browser) is let in.

    python -m examples.learn.tutorial.step5_hardened --port 8080 --ping-interval 10 --ping-timeout 5 \\
        --max-message-size 512 --allowed-origin https://localhost:8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from websockets.asyncio.server import serve
from websockets.typing import Origin

from examples.learn.tutorial.step4_events import EventManager


def rules(args: argparse.Namespace) -> dict[str, Any]:
    """serve()'s arguments for the three rules (step 6 adds its own to these)."""
    return {
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "max_size": args.max_message_size,
        "origins": [*(Origin(o) for o in args.allowed_origin), None],  # None: no Origin header at all
    }


def flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ping-interval", type=float, default=10.0, help="seconds between pings")
    parser.add_argument("--ping-timeout", type=float, default=5.0, help="seconds a pong may take")
    parser.add_argument("--max-message-size", type=int, default=512, help="bytes; past it, close 1009")
    parser.add_argument("--allowed-origin", action="append", default=[], help="an origin whose pages may connect")
    return parser


async def main(args: argparse.Namespace) -> None:
    async with serve(EventManager(256).serve_ws, "127.0.0.1", args.port, compression=None, **rules(args)):
        print(f"listening on ws://127.0.0.1:{args.port}/ws", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(flags(argparse.ArgumentParser()).parse_args()))
