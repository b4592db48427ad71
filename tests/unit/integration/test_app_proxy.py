"""The proxy to the app without I/O: request bodies, the app's answers, the headers and address passed on."""

from __future__ import annotations

import json
import logging
import math
from http import HTTPStatus

import msgspec
import pytest

from hubbub.errors import EventError
from hubbub.integration.app_proxy import (
    MAX_INFO_BYTES,
    Admission,
    Failure,
    ProxyFailed,
    WaitingPlaces,
    _LogLimiter,
    address_of,
    admission,
    connect_request,
    join_request,
    join_verdict,
    publish_request,
    rpc_answer,
    rpc_request,
    verdict,
)
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import MAX_DEPTH, TOO_DEEP
from hubbub.protocol.redaction import redact_secrets
from hubbub.server.proxy_hold import forwarded_headers, peer_address


def test_a_200_admits_with_user_rooms_and_compact_info() -> None:
    found = admission(200, b'{"user": "alice", "rooms": ["team-*", "lobby"], "info": {"role": "admin"}, "x": 1}')
    assert isinstance(found, Admission)
    assert found.user == "alice" and found.info == b'{"role":"admin"}'
    assert found.grant is not None and found.grant.exp == math.inf
    assert found.grant.may_join("team-a") and found.grant.may_join("lobby") and not found.grant.may_join("x")
    plain = admission(200, b'{"user": "bob"}')
    assert plain == Admission("bob", None, None)  # no rooms: any room; no info: none


def test_401_and_403_are_passed_on() -> None:
    assert admission(401, b"") is HTTPStatus.UNAUTHORIZED
    assert admission(403, b"whatever") is HTTPStatus.FORBIDDEN


@pytest.mark.parametrize(
    ("status", "body", "failure"),
    [
        (500, b"{}", Failure.STATUS),
        (404, b"{}", Failure.STATUS),
        (200, b"", Failure.MALFORMED),
        (200, b"[]", Failure.MALFORMED),
        (200, b'{"user": 7}', Failure.MALFORMED),
        (200, b'{"user": "a\\u202eb"}', Failure.MALFORMED),
        (200, b'{"user": "alice", "rooms": [""]}', Failure.MALFORMED),
        (200, b'{"user": "alice", "rooms": ' + json.dumps(["r"] * 257).encode() + b"}", Failure.MALFORMED),
        (200, b'{"user": "alice", "info": "text"}', Failure.MALFORMED),
        (200, json.dumps({"user": "a", "info": {"k": "v" * MAX_INFO_BYTES}}).encode(), Failure.MALFORMED),
        (200, b"[" * 100_000, Failure.MALFORMED),
    ],
)
def test_anything_else_is_a_failure(status: int, body: bytes, failure: Failure) -> None:
    with pytest.raises(ProxyFailed) as caught:
        admission(status, body)
    assert caught.value.failure is failure


def test_publish_verdicts() -> None:
    sent = msgspec.Raw(b'"hello"')
    assert verdict(200, b"{}", sent) is sent
    assert bytes(verdict(200, b'{"message": {"text": "****"}}', sent)) == b'{"text": "****"}'
    assert bytes(verdict(200, b'{"message": null}', sent)) == b"null"  # a rewrite to null is a rewrite
    with pytest.raises(EventError) as refused:
        verdict(403, b"", sent)
    assert refused.value.code is ErrorCode.FORBIDDEN
    for status, body in [(500, b"{}"), (401, b"{}"), (200, b"nope"), (200, b"[1]")]:
        with pytest.raises(ProxyFailed):
            verdict(status, body, sent)


def test_rpc_answers() -> None:
    assert bytes(rpc_answer(200, b'{"data": {"n": 1}, "extra": 2}', 100)) == b'{"n": 1}'
    assert bytes(rpc_answer(200, b'{"data": null}', 100)) == b"null"  # null is an answer
    with pytest.raises(EventError) as refused:
        rpc_answer(403, b"", 100)
    assert refused.value.code is ErrorCode.FORBIDDEN
    cases = [
        (500, b'{"data": 1}', Failure.STATUS),
        (302, b"", Failure.STATUS),
        (200, b"{}", Failure.MALFORMED),  # no data
        (200, b"[1]", Failure.MALFORMED),
        (200, b"nope", Failure.MALFORMED),
        (200, b'{"data": "' + b"x" * 100 + b'"}', Failure.MALFORMED),  # over the limit
        (200, b'{"data": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", Failure.MALFORMED),
    ]
    for status, body, failure in cases:
        with pytest.raises(ProxyFailed) as caught:
            rpc_answer(status, body, 100)
        assert caught.value.failure is failure, (status, body[:20])


def test_answers_nested_past_max_depth_are_malformed() -> None:
    """The app's JSON obeys the clients' depth limit: what it sends may reach them."""
    ok = b'{"message": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert bytes(verdict(200, ok, msgspec.Raw(b"1"))).startswith(b"[[")
    info = b'{"user": "a", "info": {"a": ' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"}}"
    assert isinstance(admission(200, info), Admission)
    deep = ok.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1)
    for call in (lambda: verdict(200, deep, msgspec.Raw(b"1")), lambda: admission(200, deep)):
        with pytest.raises(ProxyFailed) as caught:
            call()
        assert caught.value.failure is Failure.MALFORMED and caught.value.detail == TOO_DEEP


def test_request_bodies() -> None:
    assert json.loads(connect_request("1.2.3.4:5", {"a": "b"}, {"Cookie": "s=1"})) == {
        "client": "1.2.3.4:5",
        "query": {"a": "b"},
        "headers": {"Cookie": "s=1"},
    }
    body = publish_request("alice", "lobby", msgspec.Raw(b'{"n":1}'))
    assert json.loads(body) == {"user": "alice", "room": "lobby", "message": {"n": 1}}
    body = rpc_request("alice", "add", msgspec.Raw(b"[1,2]"), "1.2.3.4:5", None)
    assert json.loads(body) == {"user": "alice", "method": "add", "data": [1, 2], "client": "1.2.3.4:5"}
    body = rpc_request("alice", "add", msgspec.Raw(b"null"), "1.2.3.4:5", b'{"role":"admin"}')
    assert json.loads(body)["info"] == {"role": "admin"} and json.loads(body)["data"] is None


def test_only_allow_listed_headers_are_forwarded() -> None:
    headers = {"cookie": ["a=1", "b=2"], "authorization": ["Bearer t"], "x-other": ["no"], "accept": ["x", "y"]}
    assert forwarded_headers(headers, ("Cookie", "Authorization")) == {
        "Cookie": "a=1; b=2",
        "Authorization": "Bearer t",
    }
    assert forwarded_headers(headers, ("Accept", "X-Missing")) == {"Accept": "x, y"}


class _Transport:
    def __init__(self, peer: object) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return self.peer


def test_peer_address() -> None:
    assert peer_address(_Transport(("10.0.0.1", 5000))) == "10.0.0.1:5000"
    assert peer_address(_Transport(("::1", 5000, 0, 0))) == "[::1]:5000"
    assert peer_address(_Transport(None)) == ""
    assert peer_address(None) == ""


def test_failures_are_logged_at_most_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    limiter = _LogLimiter()
    with caplog.at_level(logging.WARNING, logger="hubbub.proxy"):
        for _ in range(5):
            limiter.failed("connect", ProxyFailed(Failure.TIMEOUT, "slow"))
        limiter.failed("connect", ProxyFailed(Failure.UNREACHABLE, "ConnectError"))
        limiter.failed("publish", ProxyFailed(Failure.TIMEOUT, "slow"))
    reasons = [(r.proxy, r.reason) for r in caplog.records]  # type: ignore[attr-defined]
    assert reasons == [("connect", "timeout"), ("connect", "unreachable"), ("publish", "timeout")]


def test_cookies_are_redacted_from_request_text() -> None:
    head = "GET /ws HTTP/1.1\r\nCookie: session=s3cret; theme=dark\r\nHost: x\r\n\r\n"
    assert redact_secrets(head) == "GET /ws HTTP/1.1\r\nCookie: ***\r\nHost: x\r\n\r\n"


def test_join_verdicts() -> None:
    assert join_verdict(200, b"") is None and join_verdict(200, b"{}") is None
    assert join_verdict(200, b'{"info": {"badge": "gold"}, "other": 1}') == b'{"badge":"gold"}'
    with pytest.raises(EventError) as refused:
        join_verdict(403, b"{}")
    assert refused.value.code is ErrorCode.FORBIDDEN
    for status, body in ((500, b"{}"), (302, b""), (200, b"[]"), (200, b"<html>"), (200, b'{"info": 1}')):
        with pytest.raises(ProxyFailed):
            join_verdict(status, body)
    big = json.dumps({"info": {"bio": "x" * MAX_INFO_BYTES}}).encode()
    with pytest.raises(ProxyFailed, match="info longer than"):
        join_verdict(200, big)
    deep = b'{"info": {"a": ' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}}"
    with pytest.raises(ProxyFailed, match=TOO_DEEP):
        join_verdict(200, deep)


def test_join_request_body() -> None:
    assert json.loads(join_request("alice", "r", b'{"role":"admin"}', 4)) == {
        "user": "alice",
        "room": "r",
        "info": {"role": "admin"},
        "since": 4,
    }
    assert json.loads(join_request("bob", "r", None, None)) == {"user": "bob", "room": "r", "info": None, "since": None}


def test_a_joins_address_is_its_ipv4_or_its_ipv6_64() -> None:
    assert address_of("203.0.113.7:51234") == "203.0.113.7"
    assert address_of("[2001:db8:1:2:3:4:5:6]:443") == "2001:db8:1:2::/64"
    assert address_of("") == ""


def test_waiting_places_are_bounded_in_all_and_per_address() -> None:
    places = WaitingPlaces(40)
    places.share_per_address(per_ip=1, connections=10)  # a share of 4, raised to the floor of 16
    assert places.per_address == 16
    assert all(places.reserve("a") is None for _ in range(16))
    busy = places.reserve("a")
    assert busy is not None and busy.failure is Failure.BUSY
    assert all(places.reserve(f"b{n}") is None for n in range(24))
    assert places.reserve("c") is not None  # 40 in all
    places.release("a")
    assert places.reserve("c") is None and places.waiting == 40
