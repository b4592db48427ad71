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


NAMESPACES_EXAMPLE = """\
# ---- Namespaces: rules per group of rooms ----

# Each [[namespaces]] table gives the rooms its pattern matches (a glob on the room name, * for any
# text) their own rules; the first that matches a room wins, and a room outside every namespace keeps
# the rules above. A key left out keeps today's behaviour. Which to choose: docs/topics/channels.md.
#
# [[namespaces]]
# pattern = "news:*"      # the rooms: news:sport, news:weather, ...
# publish = "server"      # "members" (any member), "server" (clients get forbidden; the API and apps
#                         # publish), "proxy" (--publish-proxy judges each message)
# join = "open"           # "open" (anyone), "token" (the token's rooms claim decides), "proxy"
#                         # (--join-proxy decides)
# history_size = 100      # messages kept per room for resume and get_history (0: none)
# history_ttl = 600       # seconds a message stays in history
# presence = false        # no member list (get_presence: forbidden), no member_joined/member_left
"""
"""The commented `[[namespaces]]` example at the end of the file (a table cannot come before the keys)."""


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
    out += ["", "", *NAMESPACES_EXAMPLE.splitlines()]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    print(template(), end="")
    return 0
