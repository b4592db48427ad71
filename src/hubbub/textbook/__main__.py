"""`python -m hubbub.textbook`: run the textbook hub until SIGTERM or Ctrl-C (then 1001 to everyone, exit 0)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable

from hubbub.protocol.origins import config_origin
from hubbub.textbook.server import Manager, Options, serve


def parse(argv: list[str]) -> Options | list[str]:
    """The options, or one line per bad flag."""
    p = argparse.ArgumentParser(prog="python -m hubbub.textbook", description=__doc__)
    p.add_argument("--host", metavar="H", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", metavar="P", default="8001", help="port (default %(default)s; 0 picks a free one)")
    p.add_argument(
        "--max-message-size", metavar="N", default="65536", help="bytes; past it, close 1009 (default %(default)s)"
    )
    p.add_argument(
        "--ping-interval", metavar="S", default="20", help="seconds between pings; 0: none (default %(default)s)"
    )
    p.add_argument("--ping-timeout", metavar="S", default="20", help="seconds to wait for a pong (default %(default)s)")
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN connect (repeatable); default: the server's own",
    )
    args = p.parse_args(argv)
    errors: list[str] = []

    def number(flag: str, value: str, kind: Callable[[str], float], low: float, high: float = math.inf) -> float:
        try:
            result = kind(value)
            if low <= result <= high:
                return result
        except ValueError:
            pass
        bounds = f"from {low} to {high}" if high < math.inf else f"of at least {low}"
        errors.append(f"--{flag}: {value!r} is not {'an integer' if kind is int else 'a number'} {bounds}")
        return low

    options = Options(
        host=args.host,
        port=int(number("port", args.port, int, 0, 65535)),
        max_message_size=int(number("max-message-size", args.max_message_size, int, 1)),
        ping_interval=number("ping-interval", args.ping_interval, float, 0),
        ping_timeout=number("ping-timeout", args.ping_timeout, float, 0),
        allowed_origins=tuple(args.allowed_origin),
    )
    for origin in args.allowed_origin:
        if config_origin(origin) is None:
            errors.append(f"--allowed-origin: {origin!r} is not an origin (scheme://host[:port], no path)")
    return errors or options


async def run(options: Options) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await serve(Manager(options), stop)


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    if isinstance(options, list):
        print("\n".join(f"python -m hubbub.textbook: {line}" for line in options), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
