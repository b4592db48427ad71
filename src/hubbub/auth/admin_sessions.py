"""The admin dashboard's password and sessions (`--admin-password`), as plain values and no I/O.

`AdminGate.login` checks a password in constant time (the SHA-256 of each side, compared with
`hmac.compare_digest`) behind the same per-address bucket as `POST /login`
(`hubbub.auth.logins.AttemptLimiter`, `LOGIN_BURST` and `LOGIN_RATE_PER_MIN`), and answers a session
cookie's value. The value is stateless and signed: `v1.<issued>.<seen>.<nonce>.<flags>.<mac>`, the MAC an
HMAC-SHA256 under a key derived from the password (PBKDF2, once at start), so every node started with
the same password accepts every node's sessions (a load balancer may send each request anywhere),
and the expiry is inside what is signed; `flags` is `s` for a session logged in over HTTPS (its
cookie stays `Secure` behind a TLS-terminating proxy too), else `-`. `issued` bounds a session's
life (`SESSION_TTL`), `seen` its idleness (`IDLE_TTL`): a request refreshes `seen` by a new cookie
at most once a `REFRESH`.
The CSRF token of the dashboard's actions is the HMAC of the session's nonce: a page of another
origin can neither read it nor make it. A logout forgets its nonce on the node that saw it
(a bounded set); other nodes accept the cookie until it idles out, as it is gone from the
browser. docs/howto/admin.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hubbub.auth.logins import LOGIN_BURST, LOGIN_RATE_PER_MIN, AttemptLimiter, Outcome, Refusal

__all__ = ["COOKIE", "IDLE_TTL", "REFRESH", "SESSION_TTL", "AdminGate", "AdminSession"]

COOKIE = "hubbub_admin"
"""The session cookie's name."""
SESSION_TTL = 12 * 3600
"""Seconds a session lives from its login, however busy."""
IDLE_TTL = 30 * 60
"""Seconds a session lives without a request (the dashboard polls every second while open)."""
REFRESH = 60
"""Seconds between two refreshes of a session's `seen` (a new cookie)."""
KDF_ROUNDS = 200_000
"""PBKDF2 rounds deriving the signing key: a stolen cookie costs this much per password guessed offline."""
_LABEL = b"hubbub admin session v1"
MAX_REVOKED = 10_000
"""Logged-out sessions remembered per node; past it the oldest is forgotten (it idles out anyway)."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A valid session: its nonce (what its CSRF token is made of), when it began and was last seen."""

    nonce: str
    issued: int
    seen: int
    secure: bool = False
    """Logged in over HTTPS: every cookie of the session is `Secure`."""

    @property
    def expires(self) -> int:
        """When the session ends if no request comes (Unix seconds)."""
        return min(self.issued + SESSION_TTL, self.seen + IDLE_TTL)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AdminGate:
    """The password, the signing key derived from it, and the login bucket per address."""

    def __init__(self, password: str, clock: Callable[[], float] = time.time) -> None:
        self._digest = hashlib.sha256(password.encode()).digest()
        self._key = hashlib.pbkdf2_hmac("sha256", password.encode(), _LABEL, KDF_ROUNDS)
        self._clock = clock
        self.logins = AttemptLimiter(LOGIN_BURST, LOGIN_RATE_PER_MIN)
        """Login attempts per address: the bucket `POST /login` has."""
        self._revoked: OrderedDict[str, int] = OrderedDict()

    def login(self, address: str, password: str, secure: bool = False) -> str | Refusal:
        """A new session's cookie value when `password` is right; else 401, or 429 past the address's
        attempts. `secure`: the login came over HTTPS (see the module docstring)."""
        if not self.logins.charge(address):
            return Refusal.after(Outcome.LIMITED, self.logins.wait(address))
        given = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
        if not hmac.compare_digest(given, self._digest):
            return Refusal(Outcome.DENIED)
        self.logins.refund(address)
        now = int(self._clock())
        return self._cookie(AdminSession(_b64(secrets.token_bytes(16)), now, now, secure))

    def session(self, value: str | None) -> AdminSession | None:
        """The session a cookie value carries when it is signed here and neither expired nor logged out."""
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 6 or parts[0] != "v1" or parts[4] not in ("s", "-"):
            return None
        body = ".".join(parts[:5])
        # as bytes: `compare_digest` raises on a str past ASCII, and a cookie may hold any byte
        if not hmac.compare_digest(self._mac(body).encode(), parts[5].encode("utf-8", "surrogatepass")):
            return None
        try:
            issued, seen = int(parts[1]), int(parts[2])
        except ValueError:
            return None
        found = AdminSession(parts[3], issued, seen, parts[4] == "s")
        now = self._clock()
        if now >= found.expires or seen < issued or seen > now + 60 or found.nonce in self._revoked:
            return None
        return found

    def refreshed(self, found: AdminSession) -> str | None:
        """A new cookie value with `seen` now, when the last refresh is `REFRESH` old; else None."""
        now = int(self._clock())
        if now - found.seen < REFRESH:
            return None
        return self._cookie(AdminSession(found.nonce, found.issued, now, found.secure))

    def csrf(self, found: AdminSession) -> str:
        """The CSRF token of a session: what the page sends back in `X-CSRF-Token` with each action."""
        return self._mac("csrf." + found.nonce)

    def csrf_ok(self, found: AdminSession, token: str | None) -> bool:
        """Whether `token` is the session's CSRF token (constant time)."""
        return token is not None and hmac.compare_digest(self.csrf(found).encode(), token.encode("utf-8", "replace"))

    def logout(self, found: AdminSession) -> None:
        """Refuse this session on this node from now on."""
        self._revoked[found.nonce] = found.expires
        now = self._clock()
        while self._revoked and (len(self._revoked) > MAX_REVOKED or next(iter(self._revoked.values())) < now):
            self._revoked.popitem(last=False)

    def _cookie(self, found: AdminSession) -> str:
        body = f"v1.{found.issued}.{found.seen}.{found.nonce}.{'s' if found.secure else '-'}"
        return f"{body}.{self._mac(body)}"

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())
