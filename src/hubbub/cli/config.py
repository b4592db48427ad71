"""`hubbub config`: print the config file a team starts from, every setting of `hubbub serve` at its default.

Read back unchanged (`hubbub serve --config FILE`) it serves exactly the
defaults. A setting with no default to write (one computed at start-up, or a
secret, better kept in an environment variable than in a file kept in git) is
there commented out.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from hubbub.cli.settings import SERVE_OPTIONS
from hubbub.core.options import Option, Topic, toml_value

NAME = "config"
WIDTH = 100
"""Where the comments wrap."""


def add_parser(sub: Any) -> None:
    sub.add_parser(
        NAME,
        help="print a config file of every setting at its default",
        description="Print a commented TOML file of every setting of hubbub serve at its default, grouped by"
        " topic: hubbub config > hubbub.toml, edit it, then hubbub serve --config hubbub.toml.",
    )


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def _entry(option: Option) -> list[str]:
    lines = _comment(f"{option.help}.")
    if option.choices:
        lines += _comment(f"One of: {', '.join(option.choices)}.")
    if option.secret:
        empty = "[]" if isinstance(option.default, tuple) else '""'
        lines += _comment(f"A secret: better in {option.env} than in a file kept in git.")
        lines.append(f"# {option.key} = {empty}")
    elif option.default is None:
        lines.append(f"# {option.key} = {option.example}")
    else:
        lines.append(f"{option.key} = {toml_value(option.default)}")
    return lines


def template() -> str:
    """The file `hubbub config` prints."""
    out = _comment(
        "hubbub serve's settings, each at its default: hubbub serve --config FILE reads this file. A flag or a"
        " HUBBUB_<KEY> environment variable wins over what it says; a key left out, or commented out, keeps its"
        " default. Every key, its flag and its variable: docs/reference/config.md."
    )
    topic: Topic | None = None
    for option in SERVE_OPTIONS:
        if option.topic is not topic:
            topic = option.topic
            out += ["", "", f"# ---- {topic.value} ----"]
        out += ["", *_entry(option)]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    print(template(), end="")
    return 0
