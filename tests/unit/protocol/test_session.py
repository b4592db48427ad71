"""The per-connection rules of `hubbub.protocol.session`, on plain values with fake time.

Every budget, bound and close decision a client can drive is checked here
without a socket: time is a float the test advances. The property test at the
end feeds random frame sequences and request calls and checks, after every
step, the invariants the connection adapter relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hubbub.protocol.codes import CloseCode
from hubbub.protocol.heartbeat import Beat
from hubbub.protocol.session import (
    MAX_OWED_PONGS,
    Limits,
    Opcode,
    PeerClose,
    Session,
    State,
    Verdict,
    valid_peer_close_code,
)


def opened(limits: Limits | None = None, now: float = 0.0) -> Session:
    session = Session(limits or Limits(), now)
    assert session.open()
    return session


# ---- the message budget ------------------------------------------------------


def test_message_budget_allows_the_burst_then_refuses() -> None:
    session = opened(Limits(rate=20, burst=100))
    assert [session.text(0.0) for _ in range(100)] == [Verdict.ALLOW] * 100
    assert session.text(0.0) is Verdict.REFUSE
    assert session.is_open and session.close_code is None  # a refusal is an answer, not a close


def test_message_budget_refills_at_its_rate_up_to_the_burst() -> None:
    session = opened(Limits(rate=20, burst=100))
    for _ in range(100):
        session.text(0.0)
    assert session.text(0.0) is Verdict.REFUSE
    assert session.text(0.05) is Verdict.ALLOW  # 20/s: one token every 50 ms
    assert session.text(0.05) is Verdict.REFUSE
    # An hour of silence saves up the burst, no more.
    assert [session.text(3600.0) for _ in range(101)].count(Verdict.ALLOW) == 100


def test_persistent_flooding_closes_with_1008_after_the_strikes() -> None:
    session = opened(Limits(rate=20, burst=100, strikes=100))
    for _ in range(100):
        assert session.text(0.0) is Verdict.ALLOW
    verdicts = [session.text(0.0) for _ in range(100)]
    assert verdicts == [Verdict.REFUSE] * 99 + [Verdict.CLOSE]
    assert session.state is State.CLOSING
    assert session.close_code == 1008


def test_an_allowed_message_resets_the_strikes() -> None:
    session = opened(Limits(rate=20, burst=1, strikes=3))
    assert session.text(0.0) is Verdict.ALLOW
    assert [session.text(0.0), session.text(0.0)] == [Verdict.REFUSE] * 2
    assert session.text(0.05) is Verdict.ALLOW  # a token came back: the count starts over
    assert [session.text(0.05), session.text(0.05)] == [Verdict.REFUSE] * 2
    assert session.text(0.05) is Verdict.CLOSE


def test_a_fragmented_message_spends_the_message_budget_once_whole() -> None:
    session = opened(Limits(rate=1, burst=1, strikes=2))
    assert session.text(0.0) is Verdict.ALLOW
    verdict, message = session.fragment(Opcode.TEXT, b"a", False, 0.0)
    assert (verdict, message) == (Verdict.ALLOW, None)  # not whole yet: nothing spent
    verdict, message = session.fragment(Opcode.CONTINUATION, b"b", True, 0.0)
    assert verdict is Verdict.REFUSE and message is not None and message.text == "ab"


def test_rate_zero_turns_the_message_budget_off() -> None:
    session = opened(Limits(rate=0, burst=0, strikes=1))
    assert all(session.text(0.0) is Verdict.ALLOW for _ in range(10_000))
    assert session.is_open


# ---- the frame budget: pings, pongs, continuations ---------------------------


def test_pings_within_the_frame_budget_are_owed_a_pong() -> None:
    session = opened(Limits(frame_rate=100, frame_burst=200))
    assert session.ping(b"1", 0.0) is True  # the first owed pong schedules a write
    assert session.ping(b"2", 0.0) is False  # the write is scheduled already
    assert session.take_pongs() == [b"1", b"2"]
    assert session.ping(b"3", 0.0) is True


def test_a_ping_over_the_frame_budget_is_not_answered() -> None:
    session = opened(Limits(frame_rate=100, frame_burst=200, strikes=100))
    for i in range(200):
        session.ping(b"%d" % i, 0.0)
        session.take_pongs()
    assert session.ping(b"over", 0.0) is False
    assert session.take_pongs() == []  # not owed
    assert session.is_open
    assert session.ping(b"later", 0.01) is True  # 100/s: one more after 10 ms
    assert session.take_pongs() == [b"later"]


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CONTINUATION])
def test_persistent_control_or_continuation_frames_close_with_1008(opcode: Opcode) -> None:
    session = opened(Limits(frame_rate=100, frame_burst=200, strikes=100, max_fragments=10**6))
    if opcode is Opcode.CONTINUATION:
        session.fragment(Opcode.TEXT, b"", False, 0.0)
    closed_at = None
    for i in range(1000):
        if opcode is Opcode.PING:
            session.ping(b"", 0.0)
        elif opcode is Opcode.PONG:
            session.pong(0.0)
        else:
            session.fragment(Opcode.CONTINUATION, b"", False, 0.0)
        if session.state is State.CLOSING:
            closed_at = i
            break
    assert closed_at == 200 + 100 - 1  # the burst, then `strikes` frames over it in a row
    assert session.close_code == 1008
    assert session.take_pongs() == [] and session.buffered == 0


def test_the_frame_budget_holds_with_the_message_budget_off() -> None:
    """`--rate-limit 0` turns off the message budget only: pings still spend the frame budget, one
    over it owes no pong, and `strikes` over it in a row close with 1008."""
    session = opened(Limits(rate=0, burst=0, frame_rate=100, frame_burst=200, strikes=100))
    assert all(session.text(0.0) is Verdict.ALLOW for _ in range(1000))
    for i in range(200):
        session.ping(b"%d" % i, 0.0)
        session.take_pongs()
    assert session.ping(b"over", 0.0) is False and session.take_pongs() == []
    for _ in range(98):
        session.ping(b"", 0.0)
    assert session.is_open
    session.ping(b"", 0.0)
    assert session.state is State.CLOSING and session.close_code == 1008


def test_owed_pongs_are_bounded_and_the_latest_are_kept_in_order() -> None:
    session = opened()
    for i in range(MAX_OWED_PONGS * 3):
        session.ping(b"%d" % i, 0.0)
        assert len(session.pong_owed) <= MAX_OWED_PONGS
    assert session.take_pongs() == [b"%d" % i for i in range(MAX_OWED_PONGS * 2, MAX_OWED_PONGS * 3)]
    assert session.take_pongs() == []


# ---- fragmented messages -----------------------------------------------------


def test_fragments_are_reassembled_into_one_message() -> None:
    session = opened()
    assert session.fragment(Opcode.TEXT, "hé".encode()[:2], False, 0.0) == (Verdict.ALLOW, None)
    assert session.buffered == 2
    verdict, message = session.fragment(Opcode.CONTINUATION, "hé".encode()[2:], True, 0.0)
    assert verdict is Verdict.ALLOW and message is not None and message.text == "hé"
    assert session.buffered == 0


def test_a_text_frame_inside_a_fragmented_message_closes_with_1002() -> None:
    session = opened()
    session.fragment(Opcode.TEXT, b"start", False, 0.0)
    assert session.text(0.0) is Verdict.CLOSE
    assert session.close_code == 1002
    assert session.buffered == 0


def test_a_new_first_frame_inside_a_fragmented_message_closes_with_1002() -> None:
    session = opened()
    session.fragment(Opcode.TEXT, b"start", False, 0.0)
    assert session.fragment(Opcode.TEXT, b"again", False, 0.0) == (Verdict.CLOSE, None)
    assert session.close_code == 1002


def test_a_continuation_without_a_message_closes_with_1002() -> None:
    session = opened()
    assert session.fragment(Opcode.CONTINUATION, b"x", True, 0.0) == (Verdict.CLOSE, None)
    assert session.close_code == 1002


def test_fragments_over_the_size_limit_close_with_1009() -> None:
    session = opened(Limits(max_message_size=200))
    session.fragment(Opcode.TEXT, b"x" * 150, False, 0.0)
    assert session.fragment(Opcode.CONTINUATION, b"x" * 50, False, 0.0) == (Verdict.ALLOW, None)
    assert session.buffered == 200  # exactly at the limit is allowed
    assert session.fragment(Opcode.CONTINUATION, b"x", True, 0.0) == (Verdict.CLOSE, None)
    assert session.close_code == 1009
    assert session.buffered == 0  # the buffer is let go at once


def test_fragments_over_max_fragments_close_with_1009() -> None:
    session = opened(Limits(max_fragments=4))
    session.fragment(Opcode.TEXT, b"", False, 0.0)
    for _ in range(3):
        assert session.fragment(Opcode.CONTINUATION, b"", False, 0.0) == (Verdict.ALLOW, None)
    assert session.fragment(Opcode.CONTINUATION, b"", True, 0.0) == (Verdict.CLOSE, None)
    assert session.close_code == 1009


def test_with_the_defaults_the_1025th_frame_of_a_message_closes_with_1009() -> None:
    """The default `max_fragments` (1024), frames sent within the frame budget (100/s): 1024 frames
    make a message, the 1025th closes with 1009 and lets the buffer go."""
    assert Limits().max_fragments == 1024
    for frames, whole in ((1024, True), (1025, False)):
        session = opened()
        now = 0.0
        session.fragment(Opcode.TEXT, b"x", False, now)
        for i in range(1, frames):
            now += 0.01
            verdict, message = session.fragment(Opcode.CONTINUATION, b"x", i == frames - 1, now)
            assert session.buffered <= session.limits.max_message_size
            if i < frames - 1:
                assert (verdict, message) == (Verdict.ALLOW, None)
        if whole:
            assert verdict is Verdict.ALLOW and message is not None and len(message.data) == 1024
        else:
            assert (verdict, message) == (Verdict.CLOSE, None)
            assert session.close_code == 1009 and session.buffered == 0


def test_max_fragments_frames_make_a_message() -> None:
    session = opened(Limits(max_fragments=4))
    session.fragment(Opcode.TEXT, b"a", False, 0.0)
    session.fragment(Opcode.CONTINUATION, b"b", False, 0.0)
    session.fragment(Opcode.CONTINUATION, b"c", False, 0.0)
    verdict, message = session.fragment(Opcode.CONTINUATION, b"d", True, 0.0)
    assert verdict is Verdict.ALLOW and message is not None and message.text == "abcd"


@pytest.mark.parametrize(
    "chunks",
    [[b"\xff"], [b"ok", b"\xc3\x28"], [b"\xe2\x82", b"\x28"], [b"\xed\xa0\x80"], [b"cut \xe2\x82"]],
    ids=["invalid-byte", "bad-continuation-byte", "split-then-bad", "surrogate", "truncated-at-end"],
)
def test_bad_utf8_in_fragments_closes_with_1007(chunks: list[bytes]) -> None:
    session = opened()
    verdict, message = Verdict.ALLOW, None
    for i, chunk in enumerate(chunks):
        opcode = Opcode.TEXT if i == 0 else Opcode.CONTINUATION
        fin = i == len(chunks) - 1
        verdict, message = session.fragment(opcode, chunk, fin, 0.0)
        if verdict is Verdict.CLOSE:
            break
    assert (verdict, message) == (Verdict.CLOSE, None)
    assert session.close_code == 1007


def test_a_binary_message_is_handed_over_without_text() -> None:
    session = opened()
    verdict, message = session.fragment(Opcode.BINARY, b"\xff\x00", True, 0.0)
    assert verdict is Verdict.ALLOW and message is not None
    assert message.text is None and message.data == b"\xff\x00"


# ---- closing -----------------------------------------------------------------


def test_peer_close_while_open_is_echoed() -> None:
    session = opened()
    session.fragment(Opcode.TEXT, b"half", False, 0.0)
    session.ping(b"p", 0.0)
    assert session.peer_close(1000, True) is PeerClose.ECHO
    assert session.state is State.CLOSING and session.close_code == 1000
    assert session.buffered == 0 and not session.pong_owed


def test_peer_close_without_a_code_is_echoed_and_recorded_as_1005() -> None:
    session = opened()
    assert session.peer_close(0, False) is PeerClose.ECHO
    assert session.close_code == 1005


def test_peer_close_answering_ours_hangs_up() -> None:
    session = opened()
    assert session.close(CloseCode.GOING_AWAY)
    assert session.peer_close(1000, True) is PeerClose.HANG_UP
    assert session.close_code == 1001  # ours stands


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_peer_close_with_an_invalid_code_is_a_protocol_error(code: int) -> None:
    session = opened()
    assert session.peer_close(code, True) is PeerClose.PROTOCOL_ERROR
    assert session.state is State.CLOSING and session.close_code == 1002


def test_close_codes_a_peer_may_send() -> None:
    assert all(valid_peer_close_code(c) for c in (1000, 1001, 1003, 1007, 1011, 3000, 4999))
    assert not any(valid_peer_close_code(c) for c in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000))


def test_peer_close_after_the_transport_is_gone_is_ignored() -> None:
    session = opened()
    session.closed()
    assert session.close_code == 1006
    assert session.peer_close(1000, True) is PeerClose.IGNORE
    assert session.peer_close(1005, True) is PeerClose.IGNORE
    assert session.state is State.CLOSED and session.close_code == 1006


def test_closed_records_the_reported_code_only_when_none_was_decided() -> None:
    reported = opened()
    reported.closed(1011)
    assert reported.close_code == 1011
    decided = opened()
    decided.close(CloseCode.TRY_AGAIN_LATER)
    decided.closed(1000)
    assert decided.close_code == 1013 and decided.state is State.CLOSED


def test_close_is_idempotent_and_true_only_the_first_time() -> None:
    session = opened()
    assert session.close(CloseCode.POLICY_VIOLATION, "first") is True
    assert session.close(CloseCode.NORMAL_CLOSURE, "second") is False
    assert session.close(CloseCode.TRY_AGAIN_LATER) is False
    assert (session.close_code, session.close_reason) == (1008, "first")
    session.closed(1000)
    assert session.close(CloseCode.NORMAL_CLOSURE) is False
    assert session.close_code == 1008


def test_close_before_open_means_it_never_opens() -> None:
    session = Session(Limits(), 0.0)
    assert session.text(0.0) is Verdict.REFUSE  # nothing is handled before the open
    assert session.close(CloseCode.GOING_AWAY)
    assert session.open() is False
    assert session.state is State.CLOSING


@pytest.mark.parametrize("end", ["close", "peer_close", "closed"])
def test_nothing_is_handed_over_after_a_close(end: str) -> None:
    session = opened(Limits(rate=0))
    session.ping(b"owed", 0.0)
    session.fragment(Opcode.TEXT, b"half", False, 0.0)
    if end == "close":
        session.close(CloseCode.NORMAL_CLOSURE)
    elif end == "peer_close":
        session.peer_close(1000, True)
    else:
        session.closed()
    assert session.take_pongs() == []  # the pong owed before is forgotten
    assert session.text(1.0) is Verdict.CLOSE
    assert session.fragment(Opcode.CONTINUATION, b"rest", True, 1.0) == (Verdict.CLOSE, None)
    assert session.fragment(Opcode.TEXT, b"whole", True, 1.0) == (Verdict.CLOSE, None)
    assert session.ping(b"more", 1.0) is False
    assert session.pong(1.0) is Verdict.REFUSE
    assert session.take_pongs() == [] and not session.pong_owed and session.buffered == 0
    assert session.beat(100.0, 1.0, 1.0) is Beat.WAIT


# ---- requests: one answer each ----------------------------------------------


def test_each_request_gets_exactly_one_answer() -> None:
    session = opened()
    session.begin("a")
    assert session.answer() == "a"
    assert session.answer() is None  # a second answer (ack after error, ...) is refused
    session.end()
    assert session.answer() is None  # after the end, nothing is owed
    session.begin(7)
    assert session.answer() == 7
    session.end()


def test_a_request_without_an_id_gets_no_answer() -> None:
    session = opened()
    session.begin(None)
    assert session.answer() is None
    session.end()


def test_a_request_that_was_not_answered_does_not_leak_into_the_next() -> None:
    session = opened()
    session.begin("first")
    session.end()  # handed to a future, say
    session.begin("second")
    assert session.answer() == "second"
    assert session.answer() is None


# ---- heartbeat ---------------------------------------------------------------


def test_heartbeat_pings_a_silent_peer_then_drops_it_with_1006() -> None:
    session = opened(now=0.0)
    assert session.beat(19.9, 20.0, 20.0) is Beat.WAIT
    assert session.beat(20.0, 20.0, 20.0) is Beat.PING
    assert session.ping_sent == 20.0
    assert session.beat(39.9, 20.0, 20.0) is Beat.WAIT  # pinged once, not again
    assert session.beat(40.0, 20.0, 20.0) is Beat.DROP
    assert session.state is State.CLOSING and session.close_code == 1006
    assert session.beat(100.0, 20.0, 20.0) is Beat.WAIT  # dropped once


@pytest.mark.parametrize("frame", ["text", "ping", "pong", "fragment"])
def test_any_frame_is_a_sign_of_life(frame: str) -> None:
    session = opened(now=0.0)
    assert session.beat(20.0, 20.0, 20.0) is Beat.PING
    if frame == "text":
        session.text(30.0)
    elif frame == "ping":
        session.ping(b"", 30.0)
    elif frame == "pong":
        session.pong(30.0)
    else:
        session.fragment(Opcode.TEXT, b"x", False, 30.0)
    assert session.ping_sent is None and session.last_seen == 30.0
    assert session.beat(40.0, 20.0, 20.0) is Beat.WAIT
    assert session.beat(50.0, 20.0, 20.0) is Beat.PING


# ---- property: invariants under any sequence ---------------------------------

ORDER = {State.CONNECTING: 0, State.OPEN: 1, State.CLOSING: 2, State.CLOSED: 3}
OVER = (State.CLOSING, State.CLOSED)
PEER_CODES = [1000, 1001, 1005, 1006, 1008, 999, 3000, 4999, 5000]

time_steps = st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.01, 0.05, 0.2, 1.0, 3.0])
payloads = st.one_of(
    st.binary(max_size=0),
    st.binary(max_size=40),
    st.text(max_size=20).map(str.encode),
    st.integers(min_value=0, max_value=120).map(lambda n: b"x" * n),
)


def _frames(opcodes: list[Opcode]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.tuples(st.just("frame"), st.sampled_from(opcodes), st.booleans(), payloads, time_steps)


data_frames = _frames([Opcode.TEXT, Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION])
control_frames = _frames([Opcode.PING, Opcode.PING, Opcode.PONG])
any_frames = _frames(list(Opcode))
fragmented = st.builds(
    lambda first, chunks, dt: [
        ("frame", first, False, chunks[0], dt),
        *(("frame", Opcode.CONTINUATION, False, chunk, dt) for chunk in chunks[1:-1]),
        ("frame", Opcode.CONTINUATION, True, chunks[-1], dt),
    ],
    st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
    st.lists(payloads, min_size=2, max_size=12),
    time_steps,
)
"""A whole fragmented message (it may still break a limit on the way)."""
pings = st.lists(_frames([Opcode.PING]), min_size=5, max_size=40)
"""A burst of pings, past `MAX_OWED_PONGS` when the frame budget lets it."""
requests = st.one_of(
    st.tuples(st.just("begin"), st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]))),
    st.tuples(st.just("answer")),
    st.tuples(st.just("end")),
)
lively = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("take_pongs")),
    st.tuples(st.just("beat"), time_steps),
)
ending = st.one_of(
    st.tuples(st.just("close"), st.sampled_from([1000, 1008, 1011, 1013])),
    st.tuples(st.just("closed"), st.one_of(st.none(), st.just(1000))),
)
body = st.lists(
    st.one_of(fragmented, pings, st.lists(st.one_of(data_frames, control_frames, requests, lively), max_size=4)),
    min_size=5,
    max_size=40,
).map(lambda groups: [step for group in groups for step in group])
"""Steps that end the session only by breaking a rule (a budget, a size, UTF-8, the heartbeat)."""
tail = st.lists(st.one_of(any_frames, requests, lively, ending), max_size=30)
"""Then anything, peer and local closes included, and what comes after them."""
steps = st.tuples(body, tail).map(lambda parts: parts[0] + parts[1])
limits = st.builds(
    Limits,
    max_message_size=st.sampled_from([125, 200, 1000]),
    max_fragments=st.sampled_from([1, 3, 8]),
    rate=st.sampled_from([0.0, 5.0, 50.0]),
    burst=st.sampled_from([1.0, 5.0]),
    frame_rate=st.sampled_from([1.0, 10.0]),
    frame_burst=st.sampled_from([2.0, 20.0, 60.0]),
    strikes=st.sampled_from([1, 3, 10]),
)


@dataclass
class Model:
    """What the test knows independently of the session: the request being answered, and time."""

    now: float = 0.0
    event_id: str | int | None = None
    answers: int = 0


def apply(session: Session, model: Model, step: tuple[object, ...]) -> None:
    """Run one step and check what that step alone promises."""
    before = session.state
    kind = step[0]
    if kind == "frame":
        _, opcode, fin, payload, dt = step
        assert isinstance(opcode, Opcode) and isinstance(fin, bool) and isinstance(payload, bytes)
        assert isinstance(dt, float)
        model.now += dt
        if opcode is Opcode.TEXT and fin:
            verdict = session.text(model.now)
            if verdict is Verdict.ALLOW:
                assert before is State.OPEN and session.state is State.OPEN
            if before in OVER:
                assert verdict is Verdict.CLOSE
        elif opcode is Opcode.PING:
            owed_before = len(session.pong_owed)
            if session.ping(payload, model.now):
                assert owed_before == 0 and list(session.pong_owed) == [payload]
            if session.state is State.OPEN and len(session.pong_owed) > owed_before:
                assert session.pong_owed[-1] == payload
            if before in OVER:
                assert not session.pong_owed
        elif opcode is Opcode.PONG:
            session.pong(model.now)
        elif opcode is Opcode.CLOSE:
            code = PEER_CODES[len(payload) % len(PEER_CODES)]  # valid and invalid codes alike
            action = session.peer_close(code, len(payload) != 1)
            if before in OVER:
                assert action in (PeerClose.HANG_UP, PeerClose.IGNORE)
        else:
            verdict, message = session.fragment(opcode, payload, fin, model.now)
            if message is not None and verdict is not Verdict.CLOSE:
                # handed to the application (or answered `rate_limited`): only while open
                assert before is State.OPEN and session.state is State.OPEN
                assert len(message.data) <= session.limits.max_message_size
            if before in OVER:
                assert (verdict, message) == (Verdict.CLOSE, None)
    elif kind == "begin":
        event_id = step[1]
        assert event_id is None or isinstance(event_id, str | int)
        session.begin(event_id)
        model.event_id, model.answers = event_id, 0
    elif kind == "answer":
        claimed = session.answer()
        if claimed is not None:
            assert claimed == model.event_id and model.answers == 0  # the begun id, at most once
            model.answers += 1
        else:
            assert model.event_id is None or model.answers == 1  # never withheld when owed
    elif kind == "end":
        session.end()
        model.event_id, model.answers = None, 0
    elif kind == "open":
        assert session.open() is (before is State.CONNECTING)
    elif kind == "take_pongs":
        owed = list(session.pong_owed)
        taken = session.take_pongs()
        assert taken == (owed if before is State.OPEN else [])
        assert not session.pong_owed
    elif kind == "beat":
        dt = step[1]
        assert isinstance(dt, float)
        model.now += dt
        beat = session.beat(model.now, 1.0, 1.0)
        if beat is Beat.DROP:
            assert session.close_code == 1006
        if before is not State.OPEN:
            assert beat is Beat.WAIT
    elif kind == "close":
        ours = step[1]
        assert isinstance(ours, int)
        first = session.close(ours)
        assert first is (before in (State.CONNECTING, State.OPEN))
        if first:
            assert session.close_code == ours
    elif kind == "closed":
        reported = step[1]
        assert reported is None or isinstance(reported, int)
        session.closed(reported)
        assert session.state is State.CLOSED


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(limits=limits, start_open=st.sampled_from([True, True, True, False]), steps=steps)
def test_session_invariants_hold_under_any_sequence(
    limits: Limits, start_open: bool, steps: list[tuple[object, ...]]
) -> None:
    session = Session(limits, 0.0)
    if start_open:
        session.open()
    model = Model()
    code_when_closed: int | None = None
    for step in steps:
        before = session.state
        apply(session, model, step)
        state = session.state
        assert ORDER[state] >= ORDER[before]  # only forward
        assert session.buffered <= limits.max_message_size
        assert len(session.pong_owed) <= MAX_OWED_PONGS
        if state in OVER:
            assert session.close_code is not None
            assert not session.pong_owed and session.buffered == 0
            if code_when_closed is None:
                code_when_closed = session.close_code
            assert session.close_code == code_when_closed  # decided once, never rewritten
        else:
            assert session.close_code is None
    event(f"ended {session.state.value} {session.close_code}")  # --hypothesis-show-statistics: what was reached
