"""Signed tokens (JWT): verifying them (`Verifier`) and minting hubbub's own (HS256), with no I/O.

A `Verifier` answers a token's `Grant` (identity, rooms, expiry) or raises `TokenError`. An HS256
token is checked with `--auth-secret`; an RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA one
with an identity provider's public key (a `KeySource`: the cached JWKS of `--auth-jwks-url`, or
`--auth-public-key`). The algorithm picks the key kind, never the other way round: an HS token is
never checked with public key material (algorithm confusion), `none` is never accepted. `exp` and
the user claim (`--auth-user-claim`, `sub` by default) are required; the rooms claim, `aud` and
`iss` checked when present or configured, with `LEEWAY` for clocks. `mint_token` makes an HS256
token (`hubbub token`). PyJWT is imported only when a token is used. The claims and why:
docs/topics/auth.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.errors import HubbubError

ALGORITHM = "HS256"
"""The algorithm of hubbub's own tokens (`--auth-secret`)."""
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
"""The algorithms of an identity provider's tokens accepted with its public keys."""
LEEWAY = 5.0
"""Seconds of clock difference tolerated between the minter and the server."""
MIN_SECRET_BYTES = 32
"""Shortest secret accepted (RFC 7518, 3.2: an HS256 key at least as long as the hash)."""
MAX_TOKEN_LENGTH = 8192
"""Longer tokens are refused unread (a JWT of a few claims is a few hundred bytes; a provider's with
groups and an RS512 signature a few thousand)."""
MAX_ROOM_PATTERNS = 256
"""Most entries a token's `rooms` may have."""
SUBPROTOCOL = "hubbub"
"""The WebSocket subprotocol the server selects when a client offers its token as one."""
TOKEN_SUBPROTOCOL_PREFIX = "hubbub.token."
"""A token offered as a subprotocol: `hubbub.token.<JWT>` next to `hubbub`."""


class TokenError(HubbubError):
    """A token that is not accepted; the message says why and never includes the token."""


class UnknownKey(TokenError):
    """The token names a key (`kid`) the key set does not hold: refreshing the set may find it."""


class KeysUnavailable(TokenError):
    """No key to check an identity provider's token with: its JWKS never loaded (503, not 401)."""


class KeySource(Protocol):
    """Where an identity provider's public keys come from (hubbub.auth.keys, hubbub.auth.jwks)."""

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The key that checks a token of `alg` naming `kid`: `UnknownKey`, `KeysUnavailable`, or
        `TokenError` when the key does not go with `alg`."""
        ...


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


class Verifier:
    """Checks tokens as configured: which keys, which audience and issuer, which claims (module docstring)."""

    def __init__(
        self,
        secret: str = "",
        keys: KeySource | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        user_claim: str = "sub",
        rooms_claim: str = "rooms",
    ) -> None:
        """`secret`: HS256 (empty: no HS token is accepted); `keys`: the provider's (None: no other token is)."""
        self.secret = secret
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.user_claim = user_claim
        self.rooms_claim = rooms_claim
        accepted = ([ALGORITHM] if secret else []) + (sorted(ASYMMETRIC) if keys is not None else [])
        self._accepted = ", ".join(accepted) or "nothing: no key configured"
        self._require = ["exp", user_claim, *(["iss"] if issuer else []), *(["aud"] if audience else [])]

    def key_id(self, token: str) -> str | None:
        """The `kid` of a token for the provider's keys, read unverified; None for any other token
        (hubbub's own, a malformed one, or one without a `kid`). The front door uses it to wait for a
        refresh of the key set only when that may help."""
        if self.keys is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        kid, alg = header.get("kid"), header.get("alg")
        # `alg` is checked a str first: the header is the client's JSON, and a list is unhashable (TypeError)
        return kid if isinstance(alg, str) and alg in ASYMMETRIC and isinstance(kid, str) else None

    def verify(self, token: str) -> Grant:
        """The grant of a valid `token`; `TokenError` for anything else (`KeysUnavailable` when the
        provider's keys are not known yet)."""
        import jwt

        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from None
        alg = header.get("alg")
        if not isinstance(alg, str):  # the client's JSON: `alg in ASYMMETRIC` would raise for a list
            raise TokenError(f"token algorithm must be {self._accepted}")
        key: Any
        if alg == ALGORITHM and self.secret:
            key = self.secret
        elif alg in ASYMMETRIC and self.keys is not None:
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise TokenError("token kid must be a string")
            key = self.keys.key_for(kid, alg)
        else:
            raise TokenError(f"token algorithm must be {self._accepted}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": self._require, "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from None
        user = claims[self.user_claim]
        exp = claims["exp"]
        if not isinstance(user, str) or not user:
            raise TokenError(f"token {self.user_claim} must be a non-empty string")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenError("token exp must be a number")
        return Grant(user, float(exp), _rooms(claims.get(self.rooms_claim), self.rooms_claim))


def verify_token(
    secret: str,
    token: str,
    audience: str | None = None,
    issuer: str | None = None,
) -> Grant:
    """The grant of a valid HS256 `token` signed with `secret`; `TokenError` for anything else."""
    if not secret:
        raise TokenError("no secret configured")
    return Verifier(secret, audience=audience, issuer=issuer).verify(token)


def _rooms(value: Any, claim: str = "rooms") -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ROOM_PATTERNS:
        raise TokenError(f"token {claim} must be a list of at most {MAX_ROOM_PATTERNS} strings")
    if not all(isinstance(room, str) and room for room in value):
        raise TokenError(f"token {claim} must be non-empty strings")
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
