"""`hubbub.auth.tokens` with plain values: what a signed token must be to be accepted, and what it grants."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from hubbub.auth.logins import mint_token, verify_token
from hubbub.auth.tokens import LEEWAY, MAX_TOKEN_LENGTH, Grant, TokenError, room_matches, token_from_subprotocols
from hubbub.protocol.redaction import redact_secrets

SECRET = "s" * 64
OTHER = "o" * 40


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_as_its_sub_with_its_rooms() -> None:
    token = mint_token(SECRET, "alice", 60, rooms=["lobby", "team-*"])
    grant = verify_token(SECRET, token)
    assert grant.sub == "alice" and grant.rooms == ("lobby", "team-*")
    assert time.time() + 55 < grant.exp <= time.time() + 60


def test_alg_none_is_refused() -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'alice', 'exp': int(time.time()) + 60})}."
    with pytest.raises(TokenError, match="HS256"):
        verify_token(SECRET, unsigned)


def test_another_algorithm_is_refused_even_with_the_right_key() -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    with pytest.raises(TokenError, match="HS256"):
        verify_token(SECRET, token)


def test_a_wrong_key_is_refused() -> None:
    with pytest.raises(TokenError, match="InvalidSignatureError"):
        verify_token(SECRET, mint_token(OTHER, "alice", 60))


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_sub_and_exp_are_required(missing: str) -> None:
    claims = {"sub": "alice", "exp": int(time.time()) + 60}
    del claims[missing]
    with pytest.raises(TokenError, match="MissingRequiredClaim"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_an_empty_or_non_string_sub_is_refused() -> None:
    for sub in ("", 42):
        token = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        with pytest.raises(TokenError):
            verify_token(SECRET, token)


def test_expired_is_refused_past_the_leeway_only() -> None:
    now = time.time()
    within = mint_token(SECRET, "alice", 1, now=now - LEEWAY + 2)  # exp 1 s ago, inside the leeway
    assert verify_token(SECRET, within).sub == "alice"
    past = mint_token(SECRET, "alice", 1, now=now - LEEWAY - 5)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, past)


def test_audience_is_checked_when_configured() -> None:
    token = mint_token(SECRET, "alice", 60, audience="hub")
    assert verify_token(SECRET, token, audience="hub").sub == "alice"
    assert verify_token(SECRET, token).sub == "alice"  # not configured: not checked
    with pytest.raises(TokenError):
        verify_token(SECRET, token, audience="other")
    with pytest.raises(TokenError):
        verify_token(SECRET, mint_token(SECRET, "alice", 60), audience="hub")  # required once configured


def test_issuer_is_checked_when_configured() -> None:
    token = mint_token(SECRET, "alice", 60, issuer="idp")
    assert verify_token(SECRET, token, issuer="idp").sub == "alice"
    with pytest.raises(TokenError):
        verify_token(SECRET, token, issuer="evil")
    with pytest.raises(TokenError):
        verify_token(SECRET, mint_token(SECRET, "alice", 60), issuer="idp")


def test_malformed_rooms_are_refused() -> None:
    for rooms in ("lobby", [1], [""]):
        token = jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "rooms": rooms}, SECRET, algorithm="HS256")
        with pytest.raises(TokenError, match="rooms"):
            verify_token(SECRET, token)


def test_room_patterns() -> None:
    assert room_matches("lobby", "lobby") and not room_matches("lobby", "lobby2")
    assert room_matches("team-*", "team-a") and room_matches("team-*", "team-")
    assert not room_matches("team-*", "team") and not room_matches("team-*", "xteam-a")
    grant = Grant("alice", 0.0, ("lobby", "team-*"))
    assert grant.may_join("lobby") and grant.may_join("team-red") and not grant.may_join("other")
    assert Grant("alice", 0.0, None).may_join("anything")
    assert not Grant("alice", 0.0, ()).may_join("lobby")


def test_errors_never_carry_the_token() -> None:
    token = mint_token(OTHER, "alice", 60)
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, token)
    assert token not in str(caught.value) and token.split(".")[2] not in str(caught.value)
    with pytest.raises(TokenError, match="too long"):
        verify_token(SECRET, "a" * (MAX_TOKEN_LENGTH + 1))
    with pytest.raises(TokenError):
        verify_token(SECRET, "garbage")


def test_token_from_subprotocols() -> None:
    assert token_from_subprotocols(["hubbub, hubbub.token.abc.def.ghi"]) == ("abc.def.ghi", True)
    assert token_from_subprotocols(["hubbub.token.T"]) == ("T", False)
    assert token_from_subprotocols(["hubbub"]) == (None, True)
    assert token_from_subprotocols([]) == (None, False)


def test_mint_refuses_nonsense() -> None:
    for args, why in ((("", "a", 1.0), "secret"), ((SECRET, "", 1.0), "sub"), ((SECRET, "a", 0.0), "ttl")):
        with pytest.raises(ValueError, match=why):
            mint_token(*args)


def test_a_subprotocol_token_is_redacted_from_request_dumps() -> None:
    head = "GET /ws?token=abc.def.ghi HTTP/1.1\r\nSec-WebSocket-Protocol: hubbub, hubbub.token.abc.def.ghi\r\n"
    redacted = redact_secrets(head)
    assert "abc" not in redacted and "hubbub.token.***" in redacted and "token=***" in redacted
