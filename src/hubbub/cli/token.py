"""`hubbub token`: mint one signed token (JWT, HS256) for a hub started with the same `--auth-secret`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hubbub.cli.settings import SECRET_OPTIONS, add_options, read_secret, resolve
from hubbub.errors import ConfigError

NAME = "token"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="mint a signed token for --auth-secret",
        description="Print one HS256 token (JWT) for a hub started with the same --auth-secret.",
    )
    p.add_argument("--sub", required=True, help="the identity the token connects as")
    p.add_argument("--ttl", type=float, default=3600.0, metavar="S", help="seconds it is valid (default %(default)s)")
    p.add_argument(
        "--rooms",
        default=None,
        metavar="LIST",
        help="comma-separated rooms it may join, exact names or prefix* patterns (default: any room)",
    )
    p.add_argument("--audience", default=None, help="its aud claim (the hub's --auth-audience)")
    p.add_argument("--issuer", default=None, help="its iss claim (the hub's --auth-issuer)")
    add_options(p, SECRET_OPTIONS, grouped=False)


def require_jwt() -> None:
    """`MissingExtra` (a `ConfigError`) unless PyJWT is installed."""
    from hubbub.backends import MissingExtra

    try:
        import jwt  # noqa: F401
    except ImportError:
        raise MissingExtra("tokens need the PyJWT package: pip install 'hubbub[auth]'") from None


def run(args: argparse.Namespace) -> int:
    """One token on stdout; a bad input is one line on stderr and exit 2."""
    from hubbub.auth.tokens import MIN_SECRET_BYTES, mint_token

    try:
        secret = read_secret(resolve(args, SECRET_OPTIONS, checked=False))
        if not secret:
            raise ConfigError("no secret: give --auth-secret, --auth-secret-file or HUBBUB_AUTH_SECRET")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"--auth-secret must be at least {MIN_SECRET_BYTES} bytes")
        if not args.sub:
            raise ConfigError("--sub must not be empty")
        if not 0 < args.ttl < 10 * 365 * 86400:
            raise ConfigError("--ttl must be positive (and under ten years)")
        rooms = None if args.rooms is None else [r.strip() for r in args.rooms.split(",") if r.strip()]
        require_jwt()
    except ConfigError as exc:
        print(f"hubbub token: {exc}", file=sys.stderr)
        return 2
    print(mint_token(secret, args.sub, args.ttl, rooms, args.audience, args.issuer))
    return 0
