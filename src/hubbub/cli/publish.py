"""`hubbub publish`: publish one message to a room through a server's API and print its offset."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

NAME = "publish"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="publish a message through the server API",
        description="Publish one message to a room through a server's API (hubbub serve --api-key) and print its"
        " offset. The key comes from --api-key or HUBBUB_API_KEY (the first, if comma-separated).",
    )
    p.add_argument("url", nargs="?", help="the server's HTTP address, e.g. http://127.0.0.1:8000")
    p.add_argument("--room", help="the room to publish to")
    p.add_argument("--message", metavar="M", help="the message: JSON if it parses as JSON, else this text")
    p.add_argument("--from", dest="sender", metavar="NAME", help="its from (default: the server's --api-from)")
    p.add_argument(
        "--api-key", metavar="K", help="an API key of the server (prefer HUBBUB_API_KEY: a flag shows in ps)"
    )
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """The offset on stdout; one line on stderr and exit 2 for bad flags, 1 when the server refuses or
    cannot be reached."""
    import msgspec

    from hubbub.client.api import ApiClient, ApiError

    key = args.api_key or next((k for k in os.environ.get("HUBBUB_API_KEY", "").split(",") if k), "")
    missing = [flag for flag in ("url", "room", "message") if getattr(args, flag) is None]
    if missing or not key:
        wanted = ["the URL" if name == "url" else f"--{name}" for name in missing] or ["--api-key or HUBBUB_API_KEY"]
        print(f"hubbub publish: give {', '.join(wanted)}", file=sys.stderr)
        return 2
    try:
        message = msgspec.json.decode(args.message)
    except msgspec.DecodeError:
        message = args.message
    try:
        with ApiClient(args.url, key, timeout=args.timeout) as api:
            offset = api.publish(args.room, message, from_=args.sender)
    except ValueError as exc:
        print(f"hubbub publish: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"hubbub publish: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(offset)
    return 0
