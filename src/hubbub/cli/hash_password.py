"""`hubbub hash-password`: a password on stdin to its argon2id hash, for a `name:HASH` line of `--users`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hubbub.errors import ConfigError

NAME = "hash-password"


def add_parser(sub: Any) -> None:
    sub.add_parser(
        NAME,
        help="hash a password for --users",
        description="Read a password on stdin (a trailing newline is not part of it) and print its argon2id hash,"
        " for a name:HASH line of a --users file.",
    )


def run(args: argparse.Namespace) -> int:
    """Stdin to one hash line; a bad input is one line on stderr and exit 2."""
    from hubbub.auth.passwords import hash_password

    if sys.stdin.isatty():  # typed by hand: not echoed
        import getpass

        data = getpass.getpass("password: ").encode()
    else:
        data = sys.stdin.buffer.read()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        password = data.decode()
    except UnicodeDecodeError:
        print("hubbub hash-password: the password is not UTF-8", file=sys.stderr)
        return 2
    if not password:
        print("hubbub hash-password: empty password (give it on stdin)", file=sys.stderr)
        return 2
    try:
        print(hash_password(password))
    except ConfigError as exc:
        print(f"hubbub hash-password: {exc}", file=sys.stderr)
        return 2
    return 0
