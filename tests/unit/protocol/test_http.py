"""HTTP/1.1 request heads and answers as plain values: what is a head, what the client wants kept, and
the bytes of an answer; and the strict reading of numbers."""

from __future__ import annotations

from http import HTTPStatus

from hubbub.protocol.http import Response, decimal, encode_response, parse_head, plain_request_line


def test_heads_and_keep_alive() -> None:
    head = parse_head(b"POST /api/publish?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert head is not None
    assert (head.method, head.path, head.one("host"), head.one("x-a")) == ("POST", "/api/publish", "h", None)
    assert head.keep_alive
    assert parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n").keep_alive is False  # type: ignore[union-attr]
    assert parse_head(b"GET / HTTP/1.0\r\n").keep_alive is False  # type: ignore[union-attr]
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n").keep_alive is True  # type: ignore[union-attr]
    for bad in (
        b"garbage",
        b"GET / SPDY/3\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n",
        b"GET / HTTP/1.1\r\n x: folded\r\n",
    ):
        assert parse_head(bad) is None, bad
    answer = encode_response(Response(HTTPStatus.OK, b"{}", headers=(("X-B", "1"),)), keep_alive=False)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in answer
    assert b"Content-Length: 2\r\n" in answer and b"X-B: 1\r\n" in answer and answer.endswith(b"\r\n\r\n{}")


def test_the_heads_hubbub_may_answer_in_picows_place() -> None:
    """A well-formed request line (upper-case method) and header lines give method and path; anything
    else is picows' to refuse."""
    assert plain_request_line(b"POST /api/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n") == (b"POST", b"/api/x")
    for bad in (
        b"post / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/2\r\n\r\n",
        b"POST /\r\n\r\n",
        b"POST / HTTP/1.1\r\n folded: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nname : x\r\n\r\n",
        b"POST / HTTP/1.1\r\nno colon\r\n\r\n",
    ):
        assert plain_request_line(bad) is None, bad


def test_numbers_are_plain_ascii_digits_within_their_bound() -> None:
    assert decimal("0042") == 42 and decimal("0" * 50 + "7") == 7
    for bad in ("", "-1", "+1", "1.0", " 1", "\u00b2", "1" * 19):
        assert decimal(bad) is None, bad
