"""The join budget of `hubbub.protocol.session`: joins and leaves have their own bucket, with fake time."""

from __future__ import annotations

from hubbub.protocol.codes import CloseCode
from hubbub.protocol.session import Limits, Session, State, Verdict


def _open(limits: Limits, now: float = 0.0) -> Session:
    session = Session(limits, now)
    session.open()
    return session


def test_a_burst_of_joins_then_the_rate() -> None:
    session = _open(Limits(join_rate=5, join_burst=10))
    assert [session.membership(0.0) for _ in range(10)] == [Verdict.ALLOW] * 10
    assert session.membership(0.0) is Verdict.REFUSE
    assert session.membership(0.2) is Verdict.ALLOW  # one token back after 1/5 s
    assert session.membership(0.2) is Verdict.REFUSE
    assert session.state is State.OPEN


def test_the_join_budget_is_apart_from_the_message_budget() -> None:
    session = _open(Limits(rate=20, burst=100, join_rate=1, join_burst=2))
    assert session.membership(0.0) is Verdict.ALLOW and session.membership(0.0) is Verdict.ALLOW
    assert session.membership(0.0) is Verdict.REFUSE
    assert session.text(0.0) is Verdict.ALLOW  # messages still flow


def test_refused_again_and_again_closes_with_1008() -> None:
    session = _open(Limits(join_rate=1, join_burst=1, strikes=5))
    assert session.membership(0.0) is Verdict.ALLOW
    verdicts = [session.membership(0.0) for _ in range(5)]
    assert verdicts == [Verdict.REFUSE] * 4 + [Verdict.CLOSE]
    assert session.state is State.CLOSING and session.close_code == CloseCode.POLICY_VIOLATION


def test_a_join_rate_of_zero_turns_the_budget_off() -> None:
    session = _open(Limits(join_rate=0, join_burst=1))
    assert all(session.membership(0.0) is Verdict.ALLOW for _ in range(1000))


def test_the_defaults_let_a_page_join_its_rooms_at_load() -> None:
    session = _open(Limits())
    assert all(session.membership(0.0) is Verdict.ALLOW for _ in range(100))
