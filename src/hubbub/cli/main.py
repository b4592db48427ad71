"""The `hubbub` command: a table of subcommands, each a module of `hubbub.cli` with `add_parser` and `run`.

`serve` runs the hub, `config` prints its config file, `token` and
`hash-password` make credentials, `publish` calls the server API, `chat` and
`bench` are clients. A bad command line is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from hubbub._version import __version__
from hubbub.cli import bench, chat, config, hash_password, publish, serve, token
from hubbub.cli.parser import Parser, parse_args

COMMANDS = (serve, bench, chat, hash_password, token, publish, config)
"""The subcommands, in the order `hubbub --help` lists them."""

RUN: dict[str, Callable[[argparse.Namespace], int]] = {command.NAME: command.run for command in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    """The parser of `hubbub` and every subcommand."""
    parser = Parser(prog="hubbub", description="A real-time event hub over WebSockets.")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hubbub ARGV...`; the exit code."""
    args = parse_args(build_parser(), argv)
    return RUN[args.command](args)


__all__ = ["build_parser", "main", "parse_args"]
