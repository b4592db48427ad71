"""The `hubbub` command's argparse parser: a bad command line is one line naming the subcommand, and exit 2."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line, for `hubbub` and each of its subcommands."""

    def error(self, message: str) -> NoReturn:
        """A bad command line: one line naming the (sub)command and what is wrong, then exit 2.

        argparse's default prints the whole usage block first, burying the one line that
        matters; `--help` still prints it for whoever asks.
        """
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        message = re.sub(r"^command: invalid choice: ('[^']*')", r"unknown command \1", message)
        if message == "the following arguments are required: command":
            message = f"choose a command: {', '.join(commands(self))} (hubbub --help says what each does)"
        self.exit(2, f"{self.prog}: {message}\n")


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers by name (empty for a parser without subcommands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args`, but an unknown flag is reported by its subcommand (`hubbub serve: unrecognized
    arguments: --prot`), as every other bad flag is, not by the top-level parser."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands(parser).get(getattr(args, "command", ""), parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args
