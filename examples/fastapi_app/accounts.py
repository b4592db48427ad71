"""The app's own users and session: what hubbub's connect proxy asks about.

A tiny in-memory user list with scrypt-hashed passwords (a real app has a database), and a session
cookie the app signs with HMAC-SHA256: `<base64url of {"user", "exp"}>.<hex signature>`. The browser
sends the cookie to the app, and -- the page and hubbub share a host -- to hubbub's `/ws`, which
passes it to `POST /hubbub/connect`, where the same `user_from_cookie` reads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "example_session"
"""The session cookie's name. Cookies are scoped by host, not port: hubbub on the same host gets it."""
SESSION_TTL = 8 * 3600.0
"""Seconds a login lasts."""

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
"""scrypt's cost: about 16 MiB and a few tens of milliseconds per hash, the interactive-login level."""


@dataclass(frozen=True, slots=True)
class User:
    """One account: its login name, the name shown in the chat, whether it may announce, its hash."""

    name: str
    display: str
    admin: bool
    salt: bytes
    hashed: bytes

    def password_is(self, password: str) -> bool:
        """Whether `password` is this user's, compared in constant time."""
        return hmac.compare_digest(_hash(password, self.salt), self.hashed)


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def make_user(name: str, display: str, password: str, *, admin: bool = False) -> User:
    """A user whose password is kept only as a salted scrypt hash."""
    salt = secrets.token_bytes(16)
    return User(name, display, admin, salt, _hash(password, salt))


class Users:
    """The app's accounts by login name."""

    def __init__(self, users: list[User]) -> None:
        self._by_name = {user.name: user for user in users}
        self._dummy = make_user("-", "-", secrets.token_hex(8))

    def get(self, name: str) -> User | None:
        """The user of that name, if any."""
        return self._by_name.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user whose name and password these are; None otherwise.

        An unknown name costs one hash too, so the time taken does not tell which names exist.
        """
        user = self._by_name.get(name)
        if user is None:
            self._dummy.password_is(password)
            return None
        return user if user.password_is(password) else None


class Sessions:
    """Signed session cookies: the app's own, read by the app and (through the proxy) for hubbub."""

    def __init__(self, secret: bytes, ttl: float = SESSION_TTL) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def cookie_value(self, user: str, now: float | None = None) -> str:
        """The cookie's value for a login of `user` now."""
        expires = (time.time() if now is None else now) + self.ttl
        data = base64.urlsafe_b64encode(json.dumps({"user": user, "exp": expires}).encode()).rstrip(b"=")
        return f"{data.decode()}.{self._sign(data)}"

    def user(self, value: str | None, now: float | None = None) -> str | None:
        """The user of a cookie value this app signed and that has not expired; None for anything else."""
        if not value or value.count(".") != 1:
            return None
        data, signature = value.split(".")
        if not hmac.compare_digest(self._sign(data.encode()), signature):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("user"), str):
            return None
        if not isinstance(claims.get("exp"), float | int) or claims["exp"] < (time.time() if now is None else now):
            return None
        user: str = claims["user"]
        return user

    def user_from_cookie(self, header: str) -> str | None:
        """The user of a whole `Cookie` header (as hubbub's connect proxy passes it on), or None.

        Split by hand: other apps on the same host may have set cookies that a strict parser refuses.
        """
        for pair in header.split(";"):
            name, _, value = pair.strip().partition("=")
            if name == COOKIE:
                return self.user(value)
        return None
