"""Secrets out of what hubbub prints: broker URLs lose their passwords, requests their tickets and tokens.

Its own module, below the backends and the CLI that both need it, so that no
backend imports the package that chooses between backends.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit


def redact(url: str) -> str:
    """`url` without its password, for messages and logs (`redis://:secret@host` -> `redis://:***@host`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


_SECRET_VALUES = re.compile(
    r"((?:^|[?&;\s])(?:ticket|otp|token)=)[^&;\s#]*|((?:authorization|cookie):[ \t]*)[^\r\n]*|(hubbub\.token\.)[^,\s]*",
    re.I,
)


def redact_secrets(text: str) -> str:
    """`text` with the values of `ticket`, `otp` and `token` query parameters, of an `Authorization`
    or `Cookie` header (the connect proxy's credentials) and of a `hubbub.token.T` subprotocol
    replaced by `***`: for anything that may hold a request line or head."""
    if "=" not in text and ":" not in text and "hubbub.token." not in text:
        return text
    return _SECRET_VALUES.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)


def redact_arg(value: object) -> object:
    """A logging argument with `redact_secrets` applied when it is text or bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_secrets(bytes(value).decode("latin-1"))
    if isinstance(value, str):
        return redact_secrets(value)
    return value
