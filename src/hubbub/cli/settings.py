"""`hubbub serve`'s settings from their four sources: flags, `HUBBUB_*` variables, a TOML file, the defaults.

Every source is derived from the declarations of `hubbub.core.settings`: the
flag `--max-message-size`, the variable `HUBBUB_MAX_MESSAGE_SIZE` and the
config key `max_message_size` are one setting. The first source that sets it
wins, in that order. A repeatable flag's values are added to its variable's
list (`HUBBUB_API_KEY=k1,k2 --api-key k3` is three keys), and together they
replace the file's list; an empty list is the default.

A bad value, an unknown key or a file that cannot be read is a `ConfigError`
naming where the value came from (`--port`, `HUBBUB_PORT` or `hubbub.toml:
port`). A `HUBBUB_*` variable that names no setting is only warned about: a
shell may export variables of other tools that share the prefix.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hubbub.core.options import LIST, SWITCH, TEXT, Option, Topic, named, toml_value
from hubbub.core.settings import OPTIONS, Settings
from hubbub.errors import ConfigError
from hubbub.protocol.namespaces import from_tables

APP = Option(
    key="app",
    kind=TEXT,
    default="",
    topic=Topic.APPLICATION,
    metavar="MODULE:ATTR",
    help="serve this application's Hub, or a function returning one, imported with the current directory"
    " first on sys.path (default: the plain hub)",
)
AUTH_SECRET_FILE = Option(
    key="auth_secret_file",
    kind=TEXT,
    default="",
    topic=Topic.AUTH,
    metavar="FILE",
    help="read --auth-secret from FILE (one trailing newline stripped)",
)


def positive_int(text: str) -> int:
    """A flag's text to a positive integer (argparse's `type`, whose name its errors show: `invalid int value`)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


positive_int.__name__ = "int"


def _serve_options() -> tuple[Option, ...]:
    """The settings of `Settings`, with those of `hubbub serve` alone beside their kin."""
    out: list[Option] = []
    for option in OPTIONS:
        if option.key == "api_key":
            out.append(APP)
        out.append(option)
        if option.key == "auth_secret":
            out.append(AUTH_SECRET_FILE)
    return tuple(out)


SERVE_OPTIONS = _serve_options()
"""Every setting of `hubbub serve`: its flags, its variables and its config file's keys."""
SECRET_OPTIONS = tuple(o for o in SERVE_OPTIONS if o.key in ("auth_secret", "auth_secret_file"))
"""`--auth-secret` and `--auth-secret-file`, which `hubbub token` shares."""
NAMESPACES = "namespaces"
"""The config file's `[[namespaces]]` tables: not a setting of one value (no flag, no variable)."""
CONFIG_VARIABLE = "HUBBUB_CONFIG"
"""The config file when `--config` is not given."""
TOOL_VARIABLES = frozenset({"HUBBUB_REQUIRE_BROWSER", "HUBBUB_REQUIRE_NODE", "HUBBUB_PYTHON", "HUBBUB_SCREENSHOTS"})
"""Variables of hubbub's own test suite, which names no setting: never warned about."""


def shown_default(option: Option) -> str:
    """The default as `--help` shows it: `1048576`, `Cookie, Authorization`."""
    value = option.default
    return ", ".join(value) if isinstance(value, tuple) else str(value)


def help_text(option: Option) -> str:
    """`--help`'s text of a flag: its help, then its default when the help does not say it."""
    text = option.help
    if option.default not in ("", (), False, None) and "default" not in text:
        text += f" (default {shown_default(option)})"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option], *, grouped: bool = True) -> None:
    """A flag for each option, in a section of `--help` per topic. A flag not given is absent from
    the namespace (`argparse.SUPPRESS`), so that `resolve` can tell it from its default."""
    groups: dict[Topic, Any] = {}
    for option in options:
        if grouped and option.topic not in groups:
            groups[option.topic] = parser.add_argument_group(option.topic.value)
        target = groups[option.topic] if grouped else parser
        kwargs: dict[str, Any] = {"dest": option.key, "default": argparse.SUPPRESS, "help": help_text(option)}
        if option.kind is SWITCH:
            kwargs["action"] = "store_true"
        elif option.kind is LIST:
            kwargs.update(action="append", metavar=option.metavar)
        else:
            kwargs["type"] = positive_int if option.positive else option.kind.parse
            kwargs["metavar"] = option.metavar
            if option.choices:
                kwargs.update(choices=option.choices, metavar=None)
        target.add_argument(option.flag, **kwargs)


def _shown(value: object) -> str:
    """A TOML value as a message shows it (a table or a long value in a word)."""
    if isinstance(value, dict):
        return "a table"
    try:
        text = toml_value(value)
    except TypeError:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_config(path: str, options: Sequence[Option]) -> dict[str, tuple[Any, str]]:
    """The settings a TOML file sets: key -> (value, `FILE: key`); `ConfigError` for a file that cannot
    be read, an unknown key or a value of the wrong type. Its `[[namespaces]]` tables are under
    `namespaces`, as a tuple of `Namespace` (`hubbub.protocol.namespaces`)."""
    import difflib
    import tomllib

    by_key = {o.key: o for o in options}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError, or bytes that are not UTF-8
        raise ConfigError(f"{path}: not a TOML file: {exc}") from None
    found: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if key == NAMESPACES:
            found[key] = (from_tables(value, f"{path}: namespaces"), f"{path}: namespaces")
            continue
        option = by_key.get(key)
        if option is None:
            close = difflib.get_close_matches(key, [*by_key, NAMESPACES], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        if not option.kind.accepts(value):
            said = "" if option.secret else f", not {_shown(value)}"
            raise ConfigError(f"{path}: {key} must be {option.kind.name}{said}")
        found[key] = (option.kind.convert(value), f"{path}: {key}")
    return found


def _from_env(option: Option, environ: Mapping[str, str]) -> Any:
    """The value of the option's variable; None when it is not set."""
    text = environ.get(option.env)
    if text is None:
        return None
    try:
        return option.parse(text)
    except ValueError:
        raise ConfigError(f"{option.env}: invalid value {text!r}") from None


def resolve(
    args: argparse.Namespace,
    options: Sequence[Option] = SERVE_OPTIONS,
    environ: Mapping[str, str] | None = None,
    config: str | None = None,
    *,
    checked: bool = True,
) -> dict[str, Any]:
    """The options that a flag, a variable or the `config` file sets, by key, from the first source
    that sets it; `ConfigError` names the source of a value that is not of the option's kind, or
    (`checked`) that its checks refuse."""
    environ = os.environ if environ is None else environ
    given = vars(args)
    in_file = read_config(config, options) if config else {}
    found: dict[str, tuple[Any, str]] = {}
    if NAMESPACES in in_file:
        found[NAMESPACES] = in_file[NAMESPACES]
    for option in options:
        env = _from_env(option, environ)
        if option.kind is LIST:
            items = (*(env or ()), *given.get(option.key, ()))
            if items:
                found[option.key] = (items, option.flag if option.key in given else option.env)
            elif in_file.get(option.key, ((),))[0]:
                found[option.key] = in_file[option.key]
        elif option.key in given:
            found[option.key] = (given[option.key], option.flag)
        elif env is not None:
            found[option.key] = (env, option.env)
        elif option.key in in_file:
            found[option.key] = in_file[option.key]
        if checked and option.key in found:
            value, source = found[option.key]
            problem = option.problem(value)
            if problem is not None:
                raise ConfigError(named(source, problem))
    return {key: value for key, (value, _) in found.items()}


def config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The config file: `--config`, else `HUBBUB_CONFIG`, else none."""
    return getattr(args, "config", None) or environ.get(CONFIG_VARIABLE) or None


def read_secret(values: Mapping[str, Any]) -> str:
    """The secret of `--auth-secret` or `--auth-secret-file` (not both); `ConfigError` for a bad file."""
    path = values.get("auth_secret_file", "")
    if not path:
        return str(values.get("auth_secret", ""))
    if values.get("auth_secret"):
        raise ConfigError("give --auth-secret or --auth-secret-file, not both")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read --auth-secret-file {path}: {reason}") from None
    secret = text[:-1] if text.endswith("\n") else text
    if secret.endswith("\r"):
        secret = secret[:-1]
    if not secret:
        raise ConfigError(f"--auth-secret-file {path} is empty")
    return secret


def to_settings(values: Mapping[str, Any]) -> Settings:
    """`Settings` of what `resolve` found (the secret file read); its cross checks raise `ConfigError`."""
    kwargs: dict[str, Any] = {}
    for option in SERVE_OPTIONS:
        value = values.get(option.key)
        if option.attr is None or value is None or (value == "" and option.default is None):
            continue  # unset; an empty `--node-id` too: made per run
        kwargs[option.attr] = not value if option.invert else value
    if values.get("auth_secret_file"):
        kwargs["auth_secret"] = read_secret(values)
    if values.get(NAMESPACES):
        kwargs[NAMESPACES] = values[NAMESPACES]
    return Settings(**kwargs)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """The `Settings` of a parsed `hubbub serve` command line, with its variables and config file."""
    environ = os.environ if environ is None else environ
    config = config_path(args, environ)
    return checked_settings(resolve(args, SERVE_OPTIONS, environ, config), config)


def checked_settings(values: Mapping[str, Any], config: str | None) -> Settings:
    """`to_settings`, its namespace cross checks naming the `config` file: namespaces come only from it,
    and its other mistakes name it too."""
    try:
        return to_settings(values)
    except ConfigError as exc:
        if config and values.get(NAMESPACES) and str(exc).startswith("namespace "):
            raise ConfigError(f"{config}: {exc}") from None
        raise


def unknown_variables(environ: Mapping[str, str]) -> Iterator[str]:
    """A warning for each `HUBBUB_*` variable that names no setting (a typo: `HUBBUB_PROT`)."""
    import difflib

    known = {o.env for o in SERVE_OPTIONS} | {CONFIG_VARIABLE}
    for name in sorted(environ):
        if name.startswith("HUBBUB_") and name not in known and name not in TOOL_VARIABLES:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            yield f"warning: {name} names no setting{hint}; ignored"
