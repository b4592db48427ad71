"""`hubbub chat`: chat in a room from the terminal (`hubbub.client.chat`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

NAME = "chat"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="terminal chat",
        description="Chat in a room from the terminal; /help lists the commands once connected.",
    )
    p.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8000/ws",
        help="the hub, ws:// or wss:// (a page's http:// URL is taken for its hub's) (default %(default)s)",
    )
    p.add_argument("--room", default="lobby", help="room to join (default %(default)s)")
    p.add_argument(
        "--name",
        default=os.environ.get("USER") or "guest",
        help="display name, ignored when the URL has a token or ticket (the hub names you from it)"
        " (default: $USER, or guest when $USER is unset or empty)",
    )
    p.add_argument("--ca", metavar="FILE", help="for wss://: trust this PEM certificate (e.g. a self-signed one)")


def run(args: argparse.Namespace) -> int:
    """0 when the chat ends; 2 for a bad URL, room or certificate; 1 when the hub cannot be reached."""
    from hubbub.client import chat
    from hubbub.server.run import run_async

    try:
        return int(run_async(chat.run(args.url, args.room, args.name, ca=args.ca)))
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:  # ConfigError (--ca), InvalidURL, a bad --room
        print(f"hubbub chat: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # HubUnreachable, HandshakeRefused, an untrusted certificate
        print(f"hubbub chat: {exc}", file=sys.stderr)
        return 1
