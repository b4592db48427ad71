"""What picows' route callback returns: a plain HTTP answer, or the connection to upgrade to."""

from __future__ import annotations

from http import HTTPStatus

from picows import WSListener, WSUpgradeResponse, WSUpgradeResponseWithListener

__all__ = ["Routed", "response", "with_header"]

Routed = WSListener | WSUpgradeResponseWithListener | None
"""picows' route callback's answer: a listener upgrades, a response answers, None is picows' 404."""


def response(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Routed:
    """A plain answer (never cached) that picows writes instead of upgrading."""
    if status == HTTPStatus.OK:
        answer = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
    else:
        answer = WSUpgradeResponse.create_error_response(status, body, {"Content-Type": content_type})
    answer.headers["Cache-Control"] = "no-store"
    return WSUpgradeResponseWithListener(answer, None)


def with_header(routed: Routed, name: str, value: str) -> Routed:
    """`routed` (a `response`) with one more header."""
    assert isinstance(routed, WSUpgradeResponseWithListener)
    routed.response.headers[name] = value
    return routed
