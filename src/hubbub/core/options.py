"""What one setting of `hubbub serve` is: the declaration every reader of settings derives from.

A `Settings` field declared with `setting(...)` is a setting a person can set,
and its `Option` says everything about it once: its config file key (the flag's
name with underscores), its flag (`--` and the key with dashes), its environment
variable (`HUBBUB_` and the key in capitals), its kind, default, help, topic and
checks. The command line (`hubbub.cli.settings`), the config file, `hubbub
config` and the reference pages are built from these declarations; nothing
lists the settings a second time.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

Check = Callable[[Any], "str | None"]
"""A check of one setting's value: None when it is good, else what is wrong ("must be at least 1"),
said without the setting's name, which the caller puts first (a flag, a variable or a file's key)."""

SPEC = "hubbub.option"
"""The key of a `Settings` field's metadata that holds its declaration."""


class Topic(enum.Enum):
    """The groups settings are shown in: `--help`'s sections, the config file's and the reference's headings."""

    NETWORK = "Listening: the address, TLS and which hosts and origins are answered"
    LIMITS = "Limits: what one client, one message and the whole server may take"
    KEEPALIVE = "Keepalive and shutdown"
    AUTH = "Authentication: passwords, signed tokens"
    CLUSTER = "Cluster: the broker, presence and history"
    APPLICATION = "The application: its hub and the server API"
    WEBHOOKS = "Webhooks: events POSTed to the application"
    PROXY = "The proxy to the application: handshakes and messages it judges"
    LOGGING = "Logging"


@dataclass(frozen=True, slots=True)
class Kind:
    """A setting's type as a person writes it: on the command line, in a variable, in TOML."""

    name: str
    """What the reference and the messages call it: `an integer`, `a string`, ..."""
    parse: Callable[[str], Any]
    """A flag's or an environment variable's text to a value; `ValueError` when it is not one."""
    accepts: Callable[[object], bool]
    """Whether a value read from TOML is of this kind."""
    convert: Callable[[Any], Any] = lambda value: value
    """An accepted TOML value to the setting's value (an integer to a float, a list to a tuple)."""


def _words(text: str) -> tuple[str, ...]:
    """A comma-separated list (`HUBBUB_API_KEY=k1,k2`), empty items left out."""
    return tuple(item for item in text.split(",") if item)


def _truthy(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


TEXT = Kind("a string", str, lambda v: isinstance(v, str))
INTEGER = Kind("an integer", int, lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("a number", float, lambda v: isinstance(v, int | float) and not isinstance(v, bool), float)
SWITCH = Kind("true or false", _truthy, lambda v: isinstance(v, bool))
LIST = Kind("a list of strings", _words, lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v), tuple)

_KINDS = {"str": TEXT, "int": INTEGER, "int | None": INTEGER, "float": NUMBER, "bool": SWITCH, "tuple[str, ...]": LIST}
"""A `Settings` field's annotation (as written) to its kind."""


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of `hubbub serve`, as every reader of settings sees it."""

    key: str
    """The config file's key: the flag's name with underscores (`max_message_size`)."""
    kind: Kind
    default: Any
    """The value when no source sets it; None when there is none to show (computed, or made per run)."""
    help: str
    """One paragraph for `--help`, the config file's comment and the reference."""
    topic: Topic
    attr: str | None = None
    """The `Settings` attribute it sets; None for a setting of `hubbub serve` alone (`--app`)."""
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    positive: bool = False
    """An integer that must be at least 1, checked as it is read (before any other check)."""
    invert: bool = False
    """A switch that turns its attribute off (`--no-presence-events` sets `presence_events` False)."""
    secret: bool = False
    """Never shown: not in a message, not in the `Settings` repr, commented out in the config file."""
    example: str | None = None
    """A TOML value shown, commented out, for a setting with no default to write."""
    doc: str = ""
    """More than `help` says, for the reference page."""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "HUBBUB_" + self.key.upper()

    def parse(self, text: str) -> Any:
        """A variable's text to a value; `ValueError` when it is not one."""
        value = self.kind.parse(text)
        if self.positive and value <= 0:
            raise ValueError(f"must be a positive integer, not {text}")
        return value

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` read for this setting (from a flag, a variable or a file), said
        without its name; None when it is good."""
        if self.positive and value is not None and value <= 0:
            return f"must be a positive integer, not {value}"
        if self.choices and value not in self.choices:
            return f"must be {' or '.join([', '.join(self.choices[:-1]), self.choices[-1]])}"
        return self.invalid(value)

    def invalid(self, value: Any) -> str | None:
        """What `Settings` finds wrong with `value` (its check); None when it is good."""
        return self.check(value) if self.check is not None else None


def named(subject: str, problem: str) -> str:
    """`--port must be ...`, `--api-from: name must ...`: a problem said after the name of what has it."""
    return f"{subject}{'' if problem.startswith(':') else ' '}{problem}"


def setting(
    default: T,
    *,
    help: str,
    topic: Topic,
    key: str | None = None,
    metavar: str | None = None,
    choices: Sequence[str] = (),
    check: Check | None = None,
    positive: bool = False,
    invert: bool = False,
    secret: bool = False,
    example: str | None = None,
    factory: Callable[[], T] | None = None,
    doc: str = "",
) -> T:
    """A `Settings` field that is also a setting of `hubbub serve`: `port: int = setting(8000, help=...)`.

    `key` is the config key when it is not the attribute's name (`users` for `users_file`);
    `factory` makes the default per instance (and the setting has no default to show).
    """
    spec = {
        "key": key,
        "help": help,
        "topic": topic,
        "metavar": metavar,
        "choices": tuple(choices),
        "check": check,
        "positive": positive,
        "invert": invert,
        "secret": secret,
        "example": example,
        "doc": doc,
    }
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata={SPEC: spec})
    return field(default=default, repr=not secret, metadata={SPEC: spec})


def from_field(f: Field[Any]) -> Option:
    """The `Option` a `setting(...)` field declares."""
    spec = dict(f.metadata[SPEC])
    kind = _KINDS[str(f.type)]
    default = None if f.default is MISSING else f.default
    if spec["invert"]:
        default = not default
    return Option(key=spec.pop("key") or f.name, kind=kind, default=default, attr=f.name, **spec)


def toml_value(value: object) -> str:
    """`value` as TOML writes it: `true`, `65536`, `0.002`, `"text"`, `["a", "b"]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else f"{'-' if value < 0 else ''}inf")
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")
