"""Namespaces: rules a group of rooms shares, chosen by a glob on the room name (sans-I/O).

A namespace says who may publish into its rooms (`PublishRule`), who may join them (`JoinRule`), how
much history they keep and whether they have presence. They come from the config file's
`[[namespaces]]` tables (`from_tables`) or from Python (`Settings(namespaces=(Namespace(...), ...))`).
The first namespace whose pattern matches a room wins; a room outside every namespace keeps the
server-wide behaviour (`Rules.outside`). `Namespaces.rules(room)` is asked on every join and publish:
each room's answer is cached, so it costs a dict lookup. Which to choose: docs/topics/channels.md.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hubbub.errors import ConfigError

MAX_CACHED = 65536
"""Room names whose rules are cached at most; past it the cache starts over (room names are the clients')."""


class PublishRule(enum.Enum):
    """Who may publish into a namespace's rooms."""

    MEMBERS = "members"
    """Every member, directly (no publish proxy, even when `--publish-proxy` is set)."""
    SERVER = "server"
    """Only the server: the API, `hubbub publish` and in-process apps. A client's `send_message` is `forbidden`."""
    PROXY = "proxy"
    """The publish proxy (`--publish-proxy`) judges each client message."""


class JoinRule(enum.Enum):
    """Who may join a namespace's rooms (an `authorize_join` hook judges on top, per room)."""

    OPEN = "open"
    """Anyone (a token's or connect answer's `rooms` still limit its holder, as outside namespaces)."""
    TOKEN = "token"
    """Only a connection whose credentials name rooms (a token's `rooms` claim): they decide."""
    PROXY = "proxy"
    """The join proxy (`--join-proxy`) decides each join."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """One `[[namespaces]]` table: the rooms `pattern` matches and their rules.

    `history_size` and `history_ttl` None: the server's `--history-size` and `--history-ttl`.
    `publish` and `join` may be given as their enum or their config string ("server").
    """

    pattern: str
    """A glob on the whole room name (`fnmatch`: `*` any text, `?` one character)."""
    publish: PublishRule = PublishRule.MEMBERS
    """Who publishes: members, only the server, or what the publish proxy allows."""
    join: JoinRule = JoinRule.OPEN
    """Who joins: anyone, credentials naming the room, or whom the join proxy admits."""
    history_size: int | None = None
    """Messages kept per room (0: none); None: the server's `--history-size`."""
    history_ttl: float | None = None
    """Seconds a message is kept; None: the server's `--history-ttl`."""
    presence: bool = True
    """False: no member list (`get_presence` is `forbidden`) and no member events."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError(f"namespace {self.pattern!r}: {'; '.join(problems)}")
        object.__setattr__(self, "publish", PublishRule(self.publish))
        object.__setattr__(self, "join", JoinRule(self.join))


def _problems(ns: Namespace) -> list[str]:
    """What is wrong with a namespace's values, each said once."""
    out: list[str] = []
    if not isinstance(ns.pattern, str) or not ns.pattern:
        out.append("pattern must be a non-empty string")
    for key, enum_type in (("publish", PublishRule), ("join", JoinRule)):
        value = getattr(ns, key)
        if not isinstance(value, enum_type) and value not in {r.value for r in enum_type}:
            choices = ", ".join(repr(r.value) for r in enum_type)
            out.append(f"{key} must be one of {choices}, not {value!r}")
    size = ns.history_size
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        out.append(f"history_size must be an integer of at least 0, not {size!r}")
    ttl = ns.history_ttl
    if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0):
        out.append(f"history_ttl must be a number of seconds above 0, not {ttl!r}")
    if not isinstance(ns.presence, bool):
        out.append(f"presence must be true or false, not {ns.presence!r}")
    return out


KEYS = ("pattern", "publish", "join", "history_size", "history_ttl", "presence")
"""The keys of a `[[namespaces]]` table, and no others."""


def _with_hint(key: str) -> str:
    """An unknown key, quoted, with the known key it is closest to (a typo: `presense`), as the config
    file's top-level keys are said."""
    import difflib

    close = difflib.get_close_matches(key, KEYS, n=1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def from_tables(tables: object, where: str = "namespaces") -> tuple[Namespace, ...]:
    """The namespaces of the config file's `[[namespaces]]` tables; `ConfigError` (one line naming every
    unknown key or bad value) for anything else."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where} must be [[namespaces]] tables")
    out: list[Namespace] = []
    for index, table in enumerate(tables, 1):
        place = f"{where}[{index}]"
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            said = ", ".join(_with_hint(key) for key in unknown)
            raise ConfigError(f"{place}: unknown key{'s' if len(unknown) > 1 else ''} {said}")
        if "pattern" not in table:
            raise ConfigError(f"{place}: pattern is required")
        try:
            out.append(Namespace(**table))
        except ConfigError as exc:
            raise ConfigError(f"{place}: {str(exc).split(': ', 1)[1]}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Rules:
    """What applies to one room: its namespace's rules, or the server-wide ones (`outside`)."""

    publish: PublishRule
    join: JoinRule
    history_size: int
    history_ttl: float
    presence: bool
    outside: bool
    """True for a room outside every namespace: today's behaviour, proxies included when configured."""


class Namespaces:
    """The configured namespaces, matched against room names with a cache (one dict lookup a room)."""

    def __init__(self, namespaces: Sequence[Namespace], history_size: int, history_ttl: float) -> None:
        """`history_size`, `history_ttl`: the server's, for rooms outside every namespace and omitted keys."""
        self.namespaces = tuple(namespaces)
        self.active = bool(self.namespaces)
        """Whether any namespace is configured (without one, every room has `default`)."""
        self.default = Rules(PublishRule.MEMBERS, JoinRule.OPEN, history_size, history_ttl, True, outside=True)
        self._each = tuple(
            (
                re.compile(fnmatch.translate(ns.pattern)).match,
                Rules(
                    ns.publish,
                    ns.join,
                    history_size if ns.history_size is None else ns.history_size,
                    history_ttl if ns.history_ttl is None else float(ns.history_ttl),
                    ns.presence,
                    outside=False,
                ),
            )
            for ns in self.namespaces
        )
        self._cache: dict[str, Rules] = {}

    def rules(self, room: str) -> Rules:
        """The rules of `room`: its first matching namespace's, else `default`."""
        found = self._cache.get(room)
        if found is not None:
            return found
        found = self.default
        for match, rules in self._each:
            if match(room) is not None:
                found = rules
                break
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[room] = found
        return found

    def history(self, room: str) -> tuple[int, float]:
        """`(history_size, history_ttl)` of `room`: what a broker keeps of it."""
        rules = self.rules(room)
        return rules.history_size, rules.history_ttl

    def uses(self, predicate: Callable[[Rules], bool]) -> bool:
        """Whether any namespace's rules satisfy `predicate` (a cross check of the settings)."""
        return any(predicate(rules) for _, rules in self._each)

    @property
    def varied_history(self) -> bool:
        """Whether some namespace keeps a history other than the server's."""
        d = self.default
        return self.uses(lambda r: (r.history_size, r.history_ttl) != (d.history_size, d.history_ttl))
