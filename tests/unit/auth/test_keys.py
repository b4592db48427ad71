"""Which keys of a JWKS or a PEM file are used, and for which algorithms (hubbub.auth.keys)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from hubbub.auth.keys import MAX_KEYS, PublicKey, algorithms_for, parse_jwks
from hubbub.auth.tokens import ASYMMETRIC, KeysUnavailable, TokenError, UnknownKey, Verifier
from hubbub.errors import ConfigError

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()


def rsa_jwk(**extra: Any) -> dict[str, Any]:
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA.public_key(), as_dict=True), **extra}


def encode(*keys: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"keys": list(keys)})


def test_algorithms_follow_the_key_type() -> None:
    assert algorithms_for(RSA.public_key()) == {"RS256", "RS384", "RS512", "PS256"}
    assert algorithms_for(P256.public_key()) == {"ES256"}
    assert algorithms_for(ec.generate_private_key(ec.SECP384R1()).public_key()) == {"ES384"}
    assert algorithms_for(ED.public_key()) == {"EdDSA"}
    assert algorithms_for(ec.generate_private_key(ec.SECP521R1()).public_key()) == set()
    assert algorithms_for(ed448.Ed448PrivateKey.generate().public_key()) == set()
    assert algorithms_for(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()) == set()
    assert algorithms_for(RSA) == set()  # a private key
    assert algorithms_for(b"secret") == set()
    assert all(alg in ASYMMETRIC for alg in algorithms_for(RSA.public_key()))


def test_a_jwks_keeps_only_usable_signing_keys() -> None:
    ec_jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(P256.public_key(), as_dict=True), "kid": "ec"}
    private = {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA, as_dict=True), "kid": "private"}
    keys = parse_jwks(
        encode(
            rsa_jwk(kid="rsa"),
            ec_jwk,
            rsa_jwk(kid="enc", use="enc"),
            private,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            rsa_jwk(kid="pinned", alg="PS256"),
            rsa_jwk(kid="lies", alg="ES256"),  # an alg its type cannot have
            rsa_jwk(kid="rsa"),  # the same kid twice: the first wins
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            rsa_jwk(kid=7),
            rsa_jwk(kid="unsigned", alg="none"),
            {"kty": "Ed25519", "alg": "none", "kid": "odd"},  # PyJWK raised NotImplementedError
        )
    )
    assert set(keys.keys) == {"rsa", "ec", "pinned"} and keys.skipped == 9
    assert keys.keys["pinned"].algorithms == {"PS256"}
    with pytest.raises(TokenError, match="does not go with"):
        keys.key_for("pinned", "RS256")
    with pytest.raises(UnknownKey):
        keys.key_for("nope", "RS256")
    with pytest.raises(TokenError, match="several"):
        keys.key_for(None, "RS256")
    assert parse_jwks(encode(rsa_jwk())).key_for(None, "RS384") is not None  # one key, no kid: that one


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"keys": {}}', b'{"no": []}', b'{"keys": []}', b'{"keys": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["empty", "list", "keys-object", "no-keys", "none", "deep"],
)
def test_what_is_not_a_usable_jwks_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"not a JWKS|no usable key|nested too deep"):
        parse_jwks(body)


def test_a_jwks_of_many_keys_keeps_the_first_max_keys() -> None:
    keys = parse_jwks(encode(*(rsa_jwk(kid=f"k{n}") for n in range(MAX_KEYS + 10))))
    assert len(keys.keys) == MAX_KEYS and keys.skipped == 10


def _pem(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_a_pem_key_is_public_and_of_a_usable_type() -> None:
    assert PublicKey(_pem(ED.public_key())).algorithms == {"EdDSA"}
    private = RSA.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for bad in (b"", b"not a key", _pem(ec.generate_private_key(ec.SECP521R1()).public_key())):
        with pytest.raises(ConfigError, match="not a PEM public key"):
            PublicKey(bad)
    with pytest.raises(ConfigError, match=r"^--auth-public-key: this is a private key: give its public key"):
        PublicKey(private)
    with pytest.raises(ConfigError, match="--auth-public-key /nonexistent"):
        PublicKey.load("/nonexistent")


class _Empty:
    def key_for(self, kid: str | None, alg: str) -> Any:
        raise KeysUnavailable("not loaded")


def _token(key: Any, alg: str, **claims: Any) -> str:
    body = {"sub": "alice", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "k"})


def test_the_verifier_picks_the_key_by_algorithm_and_never_the_reverse() -> None:
    secret = "s" * 64
    pem = PublicKey(_pem(RSA.public_key()))
    both = Verifier(secret, pem)
    assert both.verify(_token(RSA, "RS256")).sub == "alice"
    assert both.verify(_token(secret, "HS256")).sub == "alice"
    with pytest.raises(TokenError, match="must be HS256, ES256"):
        both.verify(_token(secret, "HS512"))
    with pytest.raises(TokenError, match="must be ES256"):  # no secret: no HS token at all
        Verifier("", pem).verify(_token(secret, "HS256"))
    with pytest.raises(TokenError, match=r"must be HS256$"):  # no keys: no provider's token
        Verifier(secret).verify(_token(RSA, "RS256"))
    with pytest.raises(KeysUnavailable):
        Verifier("", _Empty()).verify(_token(RSA, "RS256"))


def test_the_user_and_rooms_claims_are_configurable() -> None:
    verifier = Verifier("", PublicKey(_pem(ED.public_key())), user_claim="email", rooms_claim="chan")
    grant = verifier.verify(_token(ED, "EdDSA", email="a@example.com", chan=["x-*"], rooms=["y"]))
    assert (grant.sub, grant.rooms) == ("a@example.com", ("x-*",))
    with pytest.raises(TokenError, match="MissingRequiredClaimError"):
        verifier.verify(_token(ED, "EdDSA"))
    with pytest.raises(TokenError, match="email must be a non-empty string"):
        verifier.verify(_token(ED, "EdDSA", email=["a"]))
    with pytest.raises(TokenError, match="chan must be a list"):
        verifier.verify(_token(ED, "EdDSA", email="a", chan="x"))


def test_key_id_reads_a_providers_kid_only() -> None:
    verifier = Verifier("s" * 40, _Empty())
    assert verifier.key_id(_token(RSA, "RS256")) == "k"
    assert verifier.key_id(_token("s" * 40, "HS256")) is None
    assert verifier.key_id("garbage") is None
    assert Verifier("s" * 40).key_id(_token(RSA, "RS256")) is None
