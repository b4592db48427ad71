"""The admin dashboard's sessions (`hubbub.auth.admin_sessions`) on a fake clock: life, idleness,
refresh, tampering, CSRF and logout."""

from __future__ import annotations

from hubbub.auth.admin_sessions import IDLE_TTL, REFRESH, SESSION_TTL, AdminGate
from hubbub.auth.logins import Outcome, Refusal

PASSWORD = "correct-horse-battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _gate() -> tuple[AdminGate, Clock]:
    clock = Clock()
    return AdminGate(PASSWORD, clock), clock


def test_a_wrong_password_is_refused_and_a_right_one_makes_a_session() -> None:
    gate, _ = _gate()
    assert gate.login("10.0.0.1", "wrong-password!") == Refusal(Outcome.DENIED)
    cookie = gate.login("10.0.0.1", PASSWORD)
    assert isinstance(cookie, str) and PASSWORD not in cookie
    assert gate.session(cookie) is not None


def test_logins_are_limited_per_address_like_post_login() -> None:
    gate, _ = _gate()
    for _ in range(10):
        assert gate.login("10.0.0.1", "wrong-password!") == Refusal(Outcome.DENIED)
    limited = gate.login("10.0.0.1", PASSWORD)
    assert isinstance(limited, Refusal) and limited.outcome is Outcome.LIMITED and limited.retry_after >= 1
    assert isinstance(gate.login("10.0.0.2", PASSWORD), str)  # another address is not held back


def test_a_session_ends_when_idle_and_after_its_life_however_busy() -> None:
    gate, clock = _gate()
    cookie = gate.login("a", PASSWORD)
    assert isinstance(cookie, str)
    clock.now += IDLE_TTL + 1
    assert gate.session(cookie) is None  # idle
    cookie = gate.login("a", PASSWORD)
    assert isinstance(cookie, str)
    issued = clock.now
    while clock.now < issued + SESSION_TTL - REFRESH:  # a dashboard open all along: refreshed each minute
        clock.now += REFRESH
        found = gate.session(cookie)
        assert found is not None
        cookie = gate.refreshed(found) or cookie
    clock.now = issued + SESSION_TTL
    assert gate.session(cookie) is None


def test_a_refresh_comes_at_most_once_a_minute() -> None:
    gate, clock = _gate()
    cookie = gate.login("a", PASSWORD)
    assert isinstance(cookie, str)
    found = gate.session(cookie)
    assert found is not None and gate.refreshed(found) is None
    clock.now += REFRESH
    fresh = gate.refreshed(found)
    assert fresh is not None and fresh != cookie
    again = gate.session(fresh)
    assert again is not None and again.nonce == found.nonce and again.issued == found.issued


def test_a_tampered_or_foreign_cookie_is_refused() -> None:
    gate, clock = _gate()
    cookie = gate.login("a", PASSWORD)
    assert isinstance(cookie, str)
    version, issued, _seen, nonce, flags, mac = cookie.split(".")
    later = str(int(issued) + 10_000)  # a longer life, not signed
    assert gate.session(".".join([version, later, later, nonce, flags, mac])) is None
    assert gate.session(".".join([version, issued, issued, nonce, "s", mac])) is None  # flags are signed too
    assert gate.session(cookie[:-2] + "AA") is None
    assert gate.session("") is None and gate.session(None) is None and gate.session("x" * 500) is None
    other = AdminGate("another-password-12", clock)
    assert other.session(cookie) is None
    same = AdminGate(PASSWORD, clock)  # another node with the same password
    assert same.session(cookie) is not None


def test_the_csrf_token_belongs_to_its_session() -> None:
    gate, _ = _gate()
    one, two = gate.login("a", PASSWORD), gate.login("a", PASSWORD)
    assert isinstance(one, str) and isinstance(two, str)
    first, second = gate.session(one), gate.session(two)
    assert first is not None and second is not None
    assert gate.csrf_ok(first, gate.csrf(first))
    assert not gate.csrf_ok(first, gate.csrf(second))
    assert not gate.csrf_ok(first, None) and not gate.csrf_ok(first, "")


def test_a_session_logged_in_over_https_stays_secure() -> None:
    gate, clock = _gate()
    cookie = gate.login("a", PASSWORD, secure=True)
    assert isinstance(cookie, str)
    found = gate.session(cookie)
    assert found is not None and found.secure
    clock.now += REFRESH
    fresh = gate.refreshed(found)
    assert fresh is not None
    again = gate.session(fresh)
    assert again is not None and again.secure


def test_a_logout_refuses_the_session_here() -> None:
    gate, _ = _gate()
    cookie = gate.login("a", PASSWORD)
    assert isinstance(cookie, str)
    found = gate.session(cookie)
    assert found is not None
    gate.logout(found)
    assert gate.session(cookie) is None
