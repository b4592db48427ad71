"""Which `Host` and `Origin` headers a server accepts (sans-I/O: plain values in, booleans out).

`HostPolicy` answers whether a `Host` is one of the server's names (on loopback, only loopback
names unless `--allowed-host` says otherwise); `origin_allowed` whether an `Origin` is allowed
(`--allowed-origin`, else the same host). A malformed value in the settings raises `ValueError`.
Why (DNS rebinding, cross-site pages): docs/topics/node.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Names a browser can only reach on this machine; a rebinding page cannot be served under them."""

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_REG_NAME = re.compile(r"[a-z0-9._~!$&'()*+,;=%-]+")

Authority = tuple[str, int | None]
"""A host (lowercase, IPv6 without brackets) and a port, None when absent."""


def parse_authority(value: str) -> Authority | None:
    """`Example.COM:8080` → `("example.com", 8080)`, `[::1]` → `("::1", None)`; None if malformed."""
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, sep, rest = value.partition(":")
        rest = sep + rest
        if not _REG_NAME.fullmatch(host):
            return None
        host = host.removesuffix(".")
        if not host:
            return None
    if rest:
        if rest[0] != ":":
            return None
        digits = rest[1:]  # "host:" (an empty port) is allowed and means no port
        if digits:
            if not (digits.isascii() and digits.isdigit()) or int(digits) > 65535:
                return None
            port = int(digits)
    return host, port


def parse_origin(value: str) -> tuple[str, str, int | None] | None:
    """A serialized origin `scheme://host[:port]` as (scheme, host, port) with the default port
    made explicit; None for `null`, a path, credentials, or anything else malformed."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme) or any(c in rest for c in "/?#@\\"):
        return None
    authority = parse_authority(rest)
    if authority is None:
        return None
    host, port = authority
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme)


def config_origin(value: str) -> tuple[str, str, int | None] | None:
    """An `--allowed-origin` value: a serialized origin, forgiving one trailing slash."""
    return parse_origin(value.removesuffix("/"))


@lru_cache(maxsize=32)
def _allowlist(allowed: tuple[str, ...]) -> frozenset[tuple[str, str, int | None]]:
    return frozenset(o for o in map(config_origin, allowed) if o is not None)


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...], scheme: str = "http") -> bool:
    """The origin rule: no `Origin` (not a browser) passes; else the allowlist, or the same
    scheme, host and port as the server (`scheme` is what the server speaks, `host` the
    request's `Host` header)."""
    if origin is None:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if allowed:
        return parsed in _allowlist(allowed)
    if host is None:
        return False
    authority = parse_authority(host)
    if authority is None:
        return False
    same_port = authority[1] if authority[1] is not None else DEFAULT_PORTS.get(scheme)
    return parsed == (scheme, authority[0], same_port)


class HostPolicy:
    """Which `Host` headers a server answers: a set of names (with or without a port), or any."""

    __slots__ = ("_any_port", "_exact", "names")

    def __init__(self, names: Iterable[str] | None) -> None:
        """`names` are `--allowed-host` values (`name` allows any port, `name:port` only that
        port); None allows every `Host`."""
        self.names = None if names is None else tuple(names)
        self._any_port: frozenset[str] = frozenset()
        self._exact: frozenset[Authority] = frozenset()
        if self.names is not None:
            parsed = [parse_authority(n) for n in self.names]
            if None in parsed:
                raise ValueError(f"not a host name: {names!r}")
            self._any_port = frozenset(a[0] for a in parsed if a is not None and a[1] is None)
            self._exact = frozenset(a for a in parsed if a is not None and a[1] is not None)

    @classmethod
    def for_listener(cls, allowed_hosts: tuple[str, ...], bound: Iterable[str], configured: str) -> HostPolicy:
        """The policy of a server bound to `bound` addresses (`configured` is `--host`): the
        allowlist when given; else the loopback names and the bound addresses, any port, when
        every bound address is loopback; else any host."""
        if allowed_hosts:
            return cls(allowed_hosts)
        addresses = list(bound)
        if not addresses or not all(_is_loopback(a) for a in addresses):
            return cls(None)
        names = {*LOOPBACK_NAMES, *addresses}
        if configured and not _is_ip(configured):
            names.add(configured.lower())  # e.g. "localhost", or a name that resolved to loopback
        return cls(f"[{n}]" if ":" in n else n for n in sorted(names))

    def allows(self, host: str | None) -> bool:
        """Whether a request whose `Host` header is `host` (None: absent) is for this server."""
        if self.names is None:
            return True
        if host is None:
            return False
        authority = parse_authority(host)
        if authority is None:
            return False
        return authority[0] in self._any_port or authority in self._exact


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return address.lower().removesuffix(".") == "localhost"
