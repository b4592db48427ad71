"""Checks of one setting's value, named in its declaration (`setting(check=...)`).

Each answers None for a good value, else what is wrong without the setting's
name ("must be at least 1"), which the caller puts first: the flag, the
variable or the config file's key the value came from.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from hubbub.auth.tokens import MIN_SECRET_BYTES
from hubbub.core.options import Check
from hubbub.protocol.events import invalid_name_message, valid_name
from hubbub.protocol.origins import config_origin, parse_authority

API_KEY_MIN = 16
"""Shortest server API key accepted: a key is all that stands between the network and every API call."""


def at_least(low: float, unit: str = "") -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}{unit}"


def positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


def port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else f"must be between 0 and 65535, not {v}"


def send_buffer(v: int) -> str | None:
    return None if v == 0 or v >= 65536 else "must be 0 (the kernel decides) or at least 65536 bytes"


def within(low: float, high: float, text: str) -> Check:
    """`low < v <= high` (NaN fails), else `text`."""
    return lambda v: None if low < v <= high else text


def origins(values: tuple[str, ...]) -> str | None:
    for origin in values:
        if "://" not in origin:
            return f"needs a scheme, like https://example.com: {origin!r}"
        if config_origin(origin) is None:
            return f"must be scheme://host[:port], with no path: {origin!r}"
    return None


def hosts(values: tuple[str, ...]) -> str | None:
    bad = next((h for h in values if parse_authority(h) is None), None)
    return None if bad is None else f"must be a host name or address, optionally :port: {bad!r}"


def auth_secret(v: str) -> str | None:
    if v and len(v.encode()) < MIN_SECRET_BYTES:
        return f"must be at least {MIN_SECRET_BYTES} bytes (RFC 7518: HS256 keys)"
    return None


def jwks_url(url: str) -> str | None:
    """https://, or http:// to a loopback host only: keys fetched in clear over a network can be swapped."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        good = parts.scheme in ("http", "https") and bool(host) and parts.port != 0
    except ValueError:
        good, host = False, None
    if not good:
        return f"must be an https:// URL: {url!r}"
    if parts.scheme == "http" and not loopback(host or ""):
        return f"must be https:// (http:// only for a loopback host such as 127.0.0.1): {url!r}"
    return None


def loopback(host: str) -> bool:
    """Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def claim_name(v: str) -> str | None:
    return None if v and len(v) <= 64 and v.isprintable() else "must be a claim name (1 to 64 printable characters)"


def api_keys(values: tuple[str, ...]) -> str | None:
    for key in values:  # the message never holds the key
        if len(key) < API_KEY_MIN or not all("!" <= c <= "~" and c != "," for c in key):
            return (
                f"must be at least {API_KEY_MIN} printable ASCII characters, with no space or comma"
                " (try: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return None


ADMIN_PASSWORD_MIN = 12
"""Shortest `--admin-password` accepted: the dashboard can disconnect anyone and publish anywhere."""


def admin_password(v: str) -> str | None:
    if v and len(v) < ADMIN_PASSWORD_MIN:  # the message never holds the password
        return f"must be at least {ADMIN_PASSWORD_MIN} characters"
    return None


def api_from(v: str) -> str | None:
    return None if valid_name(v) else f": {invalid_name_message(v)}"


def webhook_urls(values: tuple[str, ...]) -> str | None:
    for url in values:
        try:
            parts = urlsplit(url)
            good = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a bad port or IPv6 literal
            good = False
        if not good:  # shown without a query or user info: either may hold a credential
            shown = url.split("?")[0].rpartition("@")[2][:200]
            return f"must be an http:// or https:// URL with a host, not {shown!r}"
    return None


def proxy_url(url: str) -> str | None:
    return (
        f"must be an http:// or https:// URL: {url!r}" if url and not url.startswith(("http://", "https://")) else None
    )


def header_names(values: tuple[str, ...]) -> str | None:
    for name in values:
        if not name or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name):
            return f"must be an HTTP header name: {name!r}"
    return None
