"""Public keys that verify an identity provider's tokens: a parsed JWKS, or one PEM key; no I/O.

A key verifies only the algorithms its type allows (`algorithms_for`): RSA keys RS256, RS384,
RS512 and PS256; EC keys ES256 (P-256) or ES384 (P-384); Ed25519 keys EdDSA. A JWK that names
its `alg` is held to that one. Symmetric (`oct`) and private keys, keys for encryption
(`use: enc`), short RSA keys and curves outside that list are never used: a key set that holds
them loses only them. `Jwks` (hubbub.auth.jwks) fetches and caches the set; `PublicKey` is
`--auth-public-key`. Why: docs/topics/auth.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hubbub.auth.tokens import TokenError, UnknownKey
from hubbub.errors import ConfigError
from hubbub.protocol.envelope import nesting_exceeds

__all__ = ["MAX_KEYS", "KeySet", "PublicKey", "algorithms_for", "parse_jwks"]

MAX_KEYS = 64
"""Keys of a JWKS kept at most (providers publish two or three: the current one and the next)."""
MIN_RSA_BITS = 2048
"""Shorter RSA keys are not used (RFC 7518, 3.3)."""
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
EC_ALGORITHMS = {"secp256r1": frozenset({"ES256"}), "secp384r1": frozenset({"ES384"})}
"""The EC curves accepted, by name, with the one algorithm each goes with."""
EDDSA = frozenset({"EdDSA"})


def algorithms_for(key: Any) -> frozenset[str]:
    """The algorithms `key` (a `cryptography` public key) may verify; empty for a key never to use."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS if key.key_size >= MIN_RSA_BITS else frozenset()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS.get(key.curve.name, frozenset())
    if isinstance(key, ed25519.Ed25519PublicKey):
        return EDDSA
    return frozenset()  # symmetric bytes, private keys, Ed448, DSA...


@dataclass(frozen=True, slots=True)
class Key:
    """One usable key and the algorithms it verifies."""

    key: Any
    algorithms: frozenset[str]


def _pick(key: Key, alg: str) -> Any:
    if alg not in key.algorithms:
        raise TokenError(f"token algorithm {alg} does not go with its key")
    return key.key


@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable keys of a JWKS, by `kid` (a key without one under ""); `skipped`: keys left out."""

    keys: dict[str, Key]
    skipped: int = 0

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The key for a token's `kid` and `alg`; `UnknownKey` when the set has none by that id.

        A token without a `kid` is checked with the set's only key, when it has exactly one."""
        if kid is None:
            if len(self.keys) != 1:
                raise TokenError("token names no key (kid) and the key set has several")
            return _pick(next(iter(self.keys.values())), alg)
        found = self.keys.get(kid)
        if found is None:
            raise UnknownKey("token key (kid) not in the key set")
        return _pick(found, alg)


class _Document(msgspec.Struct):
    keys: list[dict[str, Any]]


_DECODER = msgspec.json.Decoder(_Document)


def parse_jwks(body: bytes) -> KeySet:
    """The usable keys of a JWKS document (RFC 7517: `{"keys": [...]}`); `ValueError` saying what is
    wrong with one that is not a JWKS or has no usable key."""
    import jwt

    if nesting_exceeds(body):
        raise ValueError("nested too deep")
    try:
        document = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a JWKS: {str(exc)[:200]}") from None
    keys: dict[str, Key] = {}
    skipped = 0
    for jwk in document.keys:
        if len(keys) >= MAX_KEYS:
            skipped += 1
            continue
        kid = jwk.get("kid", "")
        named = jwk.get("alg")
        if not isinstance(kid, str) or jwk.get("use", "sig") != "sig" or "d" in jwk:
            skipped += 1  # no string id, for encryption, or a private key published by mistake
            continue
        try:
            parsed = jwt.PyJWK(jwk).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError, NotImplementedError):
            skipped += 1  # NotImplementedError: PyJWK's `alg: none` and the like
            continue
        algorithms = algorithms_for(parsed)
        if named is not None:
            algorithms &= {named} if isinstance(named, str) else frozenset()
        if not algorithms or kid in keys:
            skipped += 1
            continue
        keys[kid] = Key(parsed, algorithms)
    if not keys:
        raise ValueError(f"no usable key among {len(document.keys)}")
    return KeySet(keys, skipped)


class PublicKey:
    """`--auth-public-key FILE`: one PEM public key; any `kid` a token names is checked against it."""

    def __init__(self, pem: bytes, name: str = "--auth-public-key") -> None:
        """`ConfigError` for anything but a PEM public key of a type `algorithms_for` accepts."""
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        if b"PRIVATE KEY-----" in pem:  # PKCS#8, PKCS#1, SEC1, OpenSSH, encrypted or not: said before parsing
            raise ConfigError(f"{name}: this is a private key: give its public key (openssl pkey -pubout)")
        key: Any
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):  # a certificate, not PEM...
            key = None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise ConfigError(f"{name}: an RSA key of {key.key_size} bits is too short (at least {MIN_RSA_BITS} bits)")
        algorithms = algorithms_for(key) if key is not None else frozenset()
        if not algorithms:
            raise ConfigError(
                f"{name}: not a PEM public key of a usable type (RSA of {MIN_RSA_BITS}+ bits, EC P-256 or P-384,"
                " Ed25519)"
            )
        self._key = Key(key, algorithms)
        self.algorithms = algorithms
        """The algorithms its tokens may use."""

    @classmethod
    def load(cls, path: str) -> PublicKey:
        """The key in the file at `path`; `ConfigError` when it cannot be read or is not one."""
        try:
            with open(path, "rb") as f:
                pem = f.read(65536)
        except OSError as exc:
            raise ConfigError(f"--auth-public-key {path}: {exc.strerror or exc}") from None
        return cls(pem, f"--auth-public-key {path}")

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The key, when `alg` goes with it."""
        return _pick(self._key, alg)
