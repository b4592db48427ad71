"""Passwords: the `--users` file, argon2id hashes, and a verification that takes as long for anyone.

`Users` reads a `name:HASH` file (a bad line raises `ConfigError` naming the line, never its
content) and verifies in a worker thread; `hash_password` makes what `hubbub hash-password`
prints. Without argon2-cffi (the `auth` extra), `MissingArgon2`. Why: docs/topics/auth.md.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

from hubbub.errors import ConfigError
from hubbub.protocol.events import valid_name

try:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
    from argon2.low_level import Type
    from argon2.profiles import RFC_9106_LOW_MEMORY
except ImportError:  # pragma: no cover - the `auth` extra is missing
    PasswordHasher = None  # type: ignore[assignment,misc]


class MissingArgon2(ConfigError):
    """argon2-cffi is not installed; `pip install 'hubbub[auth]'`."""

    def __init__(self) -> None:
        super().__init__(
            "password hashing needs argon2-cffi: pip install 'hubbub[auth]' (from a clone: pip install '.[auth]')"
        )


PARALLELISM = 1
"""Lanes of a new hash. RFC 9106's profile says 4, which makes every check run 4 threads: two
checks at once then ask 8 cores of a 2-core machine, and the event loop waits for one. With 1, a
check is one thread, and how many run at once is the server's choice (`hubbub.auth.logins`).
The memory and passes stay the profile's, so a guess costs an attacker the same memory and work."""


def _hasher() -> PasswordHasher:
    if PasswordHasher is None:  # pragma: no cover
        raise MissingArgon2
    return PasswordHasher.from_parameters(dataclasses.replace(RFC_9106_LOW_MEMORY, parallelism=PARALLELISM))


def hash_password(password: str) -> str:
    """A fresh salted argon2id hash of `password`, in the self-describing PHC format.

    RFC 9106's low-memory profile (64 MiB, 3 passes) with one lane (`PARALLELISM`). Hashes made
    with other parameters (4 lanes, before) verify as well: a hash names its own."""
    return _hasher().hash(password)


def _check_hash(text: str) -> bool:
    """Whether `text` is an argon2id hash argon2-cffi can verify against."""
    from argon2 import extract_parameters

    try:
        return extract_parameters(text).type is Type.ID
    except (InvalidHashError, ValueError):
        return False


class Users:
    """Names and their hashes, and verification in the same time whether a name exists or not."""

    def __init__(self, hashes: dict[str, str]) -> None:
        if not hashes:
            raise ConfigError("--users: the file names no user")
        self._hashes = hashes
        from argon2 import extract_parameters

        # The dummy costs what a real user's hash costs: the parameters of the file's first hash
        # (`hubbub hash-password` gives every hash the same ones).
        params = extract_parameters(next(iter(hashes.values())))
        self._hasher = PasswordHasher.from_parameters(params)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def __len__(self) -> int:
        return len(self._hashes)

    @classmethod
    def load(cls, path: str) -> Users:
        """Read a users file; a bad one raises `ConfigError` naming the line, not its content.

        The file is read before the extra is looked for: an operator who mistyped the path and
        lacks argon2-cffi hears of both, the file first.
        """
        missing = "" if PasswordHasher is not None else f"; and {MissingArgon2()}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--users: cannot read {path}: {exc.strerror}{missing}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--users: {path} is not UTF-8{missing}") from None
        _hasher()  # the file is there: without the extra, fail now, in one line
        hashes: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            if not sep or not valid_name(name):
                raise ConfigError(f"--users: {path} line {number}: expected name:HASH with a valid name")
            if not _check_hash(hashed):
                raise ConfigError(f"--users: {path} line {number}: not an argon2id hash (see hubbub hash-password)")
            if name in hashes:
                raise ConfigError(f"--users: {path} line {number}: user {name!r} appears twice")
            hashes[name] = hashed
        return cls(hashes)

    def verify(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s; blocking (run it in a thread), the same cost for unknown names.

        A password that is not valid UTF-8 text (a lone surrogate from JSON) is checked as its
        bytes, so it fails as any wrong password does, at the same cost."""
        hashed = self._hashes.get(name)
        known = hashed is not None
        secret = password.encode("utf-8", "surrogatepass")
        try:
            self._hasher.verify(hashed if hashed is not None else self._dummy, secret)
            matched = True
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            matched = False
        return known and matched
