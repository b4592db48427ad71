"""Secrets out of what hubbub prints: broker URLs lose their passwords before any message or log.

Its own module, below the backends and the CLI that both need it, so that no
backend imports the package that chooses between backends.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def redact(url: str) -> str:
    """`url` without its password, for messages and logs (`redis://:secret@host` -> `redis://:***@host`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
