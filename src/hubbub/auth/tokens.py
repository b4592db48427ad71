"""Signed tokens (JWT, HS256) for `--auth-secret`: verifying and minting them, with no I/O.

`verify_token` answers a token's `Grant` (identity, rooms, expiry) or raises `TokenError`;
`mint_token` makes one (`hubbub token`). Only HS256 is accepted; `sub` and `exp` are required,
`rooms`, `aud` and `iss` checked when present or configured, with `LEEWAY` for clocks. PyJWT is
imported only when a token is used. The claims and why: docs/topics/auth.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hubbub.errors import HubbubError

ALGORITHM = "HS256"
LEEWAY = 5.0
"""Seconds of clock difference tolerated between the minter and the server."""
MIN_SECRET_BYTES = 32
"""Shortest secret accepted (RFC 7518, 3.2: an HS256 key at least as long as the hash)."""
MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused unread (a JWT of a few claims is a few hundred bytes)."""
MAX_ROOM_PATTERNS = 256
"""Most entries a token's `rooms` may have."""
SUBPROTOCOL = "hubbub"
"""The WebSocket subprotocol the server selects when a client offers its token as one."""
TOKEN_SUBPROTOCOL_PREFIX = "hubbub.token."
"""A token offered as a subprotocol: `hubbub.token.<JWT>` next to `hubbub`."""


class TokenError(HubbubError):
    """A token that is not accepted; the message says why and never includes the token."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: who, until when (Unix time), and which rooms (None: any)."""

    sub: str
    exp: float
    rooms: tuple[str, ...] | None = None

    def may_join(self, room: str) -> bool:
        """Whether `room` is one of `rooms`: an exact name, or matching a `prefix*` pattern."""
        return self.rooms is None or any(room_matches(pattern, room) for pattern in self.rooms)


def room_matches(pattern: str, room: str) -> bool:
    """`team-*` matches every room starting with `team-`; any other pattern only itself."""
    if pattern.endswith("*"):
        return room.startswith(pattern[:-1])
    return room == pattern


def verify_token(
    secret: str,
    token: str,
    audience: str | None = None,
    issuer: str | None = None,
) -> Grant:
    """The grant of a valid `token`; `TokenError` for anything else (bad signature, algorithm, claims, expiry)."""
    import jwt

    if not secret:
        raise TokenError("no secret configured")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    require = ["exp", "sub"]
    if issuer is not None:
        require.append("iss")
    if audience is not None:
        require.append("aud")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise TokenError("token algorithm must be HS256")
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY,
            options={"require": require, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {type(exc).__name__}") from None
    sub = claims["sub"]
    exp = claims["exp"]
    if not isinstance(sub, str) or not sub:
        raise TokenError("token sub must be a non-empty string")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("token exp must be a number")
    return Grant(sub, float(exp), _rooms(claims.get("rooms")))


def _rooms(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ROOM_PATTERNS:
        raise TokenError(f"token rooms must be a list of at most {MAX_ROOM_PATTERNS} strings")
    if not all(isinstance(room, str) and room for room in value):
        raise TokenError("token rooms must be non-empty strings")
    return tuple(value)


def mint_token(
    secret: str,
    sub: str,
    ttl: float,
    rooms: list[str] | tuple[str, ...] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A token for `sub`, valid `ttl` seconds from `now` (default: the clock), HS256-signed with `secret`."""
    import jwt

    if not secret:
        raise ValueError("an empty secret signs nothing")
    if not sub:
        raise ValueError("sub must be a non-empty string")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": sub, "iat": int(issued), "exp": int(issued + ttl)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_from_subprotocols(offered: list[str]) -> tuple[str | None, bool]:
    """The token offered as a `hubbub.token.T` subprotocol (if any), and whether `hubbub` was offered too.

    `offered` is the `Sec-WebSocket-Protocol` header values; each is a comma-separated list.
    """
    token: str | None = None
    plain = False
    for header in offered:
        for item in header.split(","):
            name = item.strip()
            if name == SUBPROTOCOL:
                plain = True
            elif name.startswith(TOKEN_SUBPROTOCOL_PREFIX) and token is None:
                token = name[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return token, plain
