"""The bounds around logins and tickets, with fake time; and what redaction hides."""

from __future__ import annotations

from hubbub.auth.logins import AttemptLimiter
from hubbub.protocol.http import parse_head
from hubbub.protocol.redaction import redact_arg, redact_secrets
from hubbub.server.login import credentials, ticket_of


def test_attempts_refill_at_their_rate_and_successes_are_refunded() -> None:
    now = [0.0]
    limiter = AttemptLimiter(burst=10, rate_per_min=10.0, clock=lambda: now[0])
    assert all(limiter.charge("1.2.3.4") for _ in range(10))
    assert not limiter.charge("1.2.3.4")
    assert limiter.charge("5.6.7.8")  # another address is not affected
    now[0] = 6.0  # one attempt back every 6 s
    assert limiter.charge("1.2.3.4")
    assert not limiter.charge("1.2.3.4")
    limiter.refund("1.2.3.4")
    assert limiter.charge("1.2.3.4")


def test_the_addresses_remembered_are_bounded() -> None:
    limiter = AttemptLimiter(burst=1, rate_per_min=1.0, max_addresses=100, clock=lambda: 0.0)
    for n in range(10_000):
        limiter.charge(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    limiter.charge("10.9.9.9")
    limiter.refund("10.9.9.9")  # back to full: forgotten, the default
    assert len(limiter) == 99


def test_credentials_from_json_or_basic() -> None:
    assert credentials({}, b'{"username": "ada", "password": "p:w"}') == ("ada", "p:w")
    assert credentials({"authorization": ["Basic YWRhOnA6dw=="]}, b"") == ("ada", "p:w")
    assert credentials({}, b'{"username": "ada"}') is None
    assert credentials({}, b"[]") is None
    assert credentials({"authorization": ["Basic bm9jb2xvbg=="]}, b"") is None


def test_request_heads_and_tickets() -> None:
    head = parse_head(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3")
    assert head is not None
    assert (head.method, head.target, head.headers) == ("POST", "/login", {"host": ["x"], "content-length": ["3"]})
    assert parse_head(b"garbage") is None
    assert ticket_of("/ws?ticket=abc&name=x") == "abc"
    assert ticket_of("/ws?otp=abc") == "abc"
    assert ticket_of("/ws?ticket=") == ""
    assert ticket_of("/ws?name=x") is None
    assert ticket_of("/other?ticket=abc") is None


def test_secrets_are_redacted_from_request_text() -> None:
    line = "GET /ws?name=ada&ticket=SECRET1&otp=SECRET2 HTTP/1.1\r\nAuthorization: Basic SECRET3\r\n"
    redacted = redact_secrets(line)
    assert "SECRET" not in redacted and "name=ada" in redacted and "ticket=***" in redacted
    assert "SECRET" not in str(redact_arg(b"/ws?token=SECRET4"))
    assert redact_arg(5) == 5
