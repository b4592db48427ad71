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
