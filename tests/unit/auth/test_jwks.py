"""The JWKS cache's lifetime rule and its fetch interval, without a network (hubbub.auth.jwks)."""

from __future__ import annotations

import pytest

from hubbub.auth import jwks
from hubbub.auth.jwks import DEFAULT_TTL, MAX_TTL, MIN_TTL, Jwks, cache_lifetime
from hubbub.auth.tokens import KeysUnavailable


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, DEFAULT_TTL),
        ("", DEFAULT_TTL),
        ("public, max-age=3600", 3600.0),
        ('max-age="900", must-revalidate', 900.0),
        ("Max-Age = 7200", 7200.0),
        ("max-age=1", MIN_TTL),
        ("max-age=0", MIN_TTL),
        ("no-cache", MIN_TTL),
        ("no-store", MIN_TTL),
        ("max-age=99999999", MAX_TTL),
        ("s-maxage=10", DEFAULT_TTL),
        ("max-age=-5", DEFAULT_TTL),
        ("max-age=abc", DEFAULT_TTL),
        ("max-age=" + "9" * 5000, DEFAULT_TTL),
    ],
)
def test_cache_lifetime_follows_max_age_within_a_floor_and_a_ceiling(header: str | None, seconds: float) -> None:
    assert cache_lifetime(header) == seconds


async def test_misses_start_at_most_one_fetch_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at the URL: each fetch fails, and misses in between start none."""
    monkeypatch.setattr(jwks, "FETCH_TIMEOUT", 0.5)
    keys = Jwks("http://127.0.0.1:9/jwks")
    try:
        for _ in range(50):
            with pytest.raises(KeysUnavailable):
                keys.key_for("k", "RS256")
        assert keys.fetches == 1
        assert keys.worth_waiting("k")  # the fetch is under way
        await keys.refresh()
        assert not keys.loaded and not keys.worth_waiting("k")  # failed, and the interval holds
        assert keys.first_refusal() and not keys.first_refusal()
    finally:
        await keys.close()
    await keys.close()  # idempotent


def _raise(_: bytes) -> None:
    raise RuntimeError("a library broke on the provider's bytes")


async def test_an_unexpected_error_while_reading_is_a_failed_fetch_and_the_keys_stay(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Jwks("http://127.0.0.1:9/jwks", min_interval=0.0)

    async def answered() -> tuple[bytes, str | None]:
        return b'{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}', None

    monkeypatch.setattr(keys, "_get", answered)
    try:
        await keys.refresh()
        assert keys.loaded and keys.key_for(None, "EdDSA") is not None
        monkeypatch.setattr(jwks, "parse_jwks", _raise)
        await keys.refresh()
        assert keys.loaded and keys.key_for(None, "EdDSA") is not None  # kept
        assert [r.getMessage() for r in caplog.records].count("auth.jwks_failed") == 1
        assert "RuntimeError" in str(caplog.records[-1].__dict__.get("reason"))
    finally:
        await keys.close()
