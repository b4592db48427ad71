"""`hubbub.client.api`, both clients, against a fake that speaks the server API's wire contract.

Every test runs twice, on `ApiClient` and on `AsyncApiClient`, through one
awaitable `call(method, *args)`: the two must send the same requests and give
the same results and exceptions. The failures that need real sockets (a closed
port, a server that never answers, keep-alive) use loopback.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hubbub.client.api import (
    ApiClient,
    ApiError,
    AsyncApiClient,
    BadRequest,
    Info,
    Member,
    NodeInfo,
    NotFound,
    RoomHistory,
    RoomInfo,
    RoomPresence,
    Unauthorized,
    Unavailable,
)
from tests.api_fake import Answer, FakeApi, serve_fake

KEY = "k1"
URL = "http://hub.test:8000"
Call = Callable[..., Awaitable[Any]]


def _caller(kind: str, url: str, key: str = KEY, fake: FakeApi | None = None, **kwargs: Any) -> tuple[Call, Any]:
    """An awaitable `call(name, *args, **kwargs)` on a sync or async client, and the client."""
    if kind == "sync":
        sync = ApiClient(url, key, transport=fake.transport() if fake else None, **kwargs)

        async def call_sync(name: str, *args: Any, **kw: Any) -> Any:
            return getattr(sync, name)(*args, **kw)

        return call_sync, sync
    client = AsyncApiClient(url, key, transport=fake.transport() if fake else None, **kwargs)

    async def call_async(name: str, *args: Any, **kw: Any) -> Any:
        return await getattr(client, name)(*args, **kw)

    return call_async, client


async def _close(client: Any) -> None:
    if isinstance(client, AsyncApiClient):
        await client.close()
    else:
        client.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi(keys=("other", KEY))


@pytest.fixture
async def call(kind: str, fake: FakeApi) -> AsyncIterator[Call]:
    caller, client = _caller(kind, URL, fake=fake)
    yield caller
    await _close(client)


def _body(fake: FakeApi) -> Any:
    return json.loads(fake.requests[-1].body)


async def test_publish_sends_the_contract_request_and_returns_the_offset(call: Call, fake: FakeApi) -> None:
    assert await call("publish", "lobby", {"text": "hi", "n": [1, 2]}) == 1
    request = fake.requests[-1]
    assert (request.method, request.path) == ("POST", "/api/publish")
    assert request.headers["authorization"] == f"apikey {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert _body(fake) == {"room": "lobby", "message": {"text": "hi", "n": [1, 2]}}  # no "from" unless given
    assert await call("publish", "lobby", "again", from_="ci") == 2
    assert _body(fake) == {"room": "lobby", "message": "again", "from": "ci"}
    assert [m["from"] for m in fake.messages["lobby"]] == ["server", "ci"]


async def test_broadcast_returns_each_rooms_offset(call: Call, fake: FakeApi) -> None:
    await call("publish", "b", 1)
    assert await call("broadcast", ("a", "b"), None, from_="ops") == {"a": 1, "b": 2}
    assert _body(fake) == {"rooms": ["a", "b"], "message": None, "from": "ops"}
    with pytest.raises(TypeError):
        await call("broadcast", "lobby", "x")  # one string is not a list of rooms


async def test_disconnect_subscribe_and_unsubscribe(call: Call, fake: FakeApi) -> None:
    assert await call("disconnect", "ada") is None
    assert _body(fake) == {"user": "ada", "code": 4000, "reason": ""}
    await call("disconnect", "bob", code=4321, reason="banned")
    assert fake.closed == [("ada", 4000, ""), ("bob", 4321, "banned")]
    fake.connections["ada"] = 2
    assert await call("subscribe", "ada", "lobby") is None
    await call("subscribe", "bob", "lobby")
    assert _body(fake) == {"user": "bob", "room": "lobby"}
    assert fake.requests[-1].path == "/api/subscribe"
    presence = await call("presence", "lobby")
    assert presence == RoomPresence("lobby", [Member("ada", 2), Member("bob", 1)], truncated=False)
    assert (fake.requests[-1].method, fake.requests[-1].query, fake.requests[-1].body) == (
        "GET",
        {"room": "lobby"},
        b"",
    )
    assert "content-type" not in fake.requests[-1].headers
    await call("unsubscribe", "ada", "lobby")
    assert fake.requests[-1].path == "/api/unsubscribe"
    assert [m.name for m in (await call("presence", "lobby")).members] == ["bob"]


async def test_history_is_typed_and_pages_with_since_and_limit(call: Call, fake: FakeApi) -> None:
    for n in range(5):
        await call("publish", "lobby", {"n": n}, from_="ada")
    latest = await call("history", "lobby")
    assert isinstance(latest, RoomHistory) and latest.offset == 5 and len(latest.messages) == 5
    assert fake.requests[-1].query == {"room": "lobby"}  # since and limit only when given
    page = await call("history", "lobby", since=1, limit=2)
    assert fake.requests[-1].query == {"room": "lobby", "since": "1", "limit": "2"}
    assert [(m.offset, m.message, m.from_, m.room) for m in page.messages] == [
        (2, {"n": 1}, "ada", "lobby"),
        (3, {"n": 2}, "ada", "lobby"),
    ]
    assert page.messages[0].sent == datetime(2026, 12, 5, 10, 0, 0, 123000, tzinfo=UTC)


async def test_rooms_and_info(call: Call, fake: FakeApi) -> None:
    assert await call("rooms") == []
    await call("subscribe", "ada", "zeta")
    await call("subscribe", "ada", "alpha")
    await call("subscribe", "bob", "alpha")
    assert await call("rooms") == [RoomInfo("alpha", 2), RoomInfo("zeta", 1)]
    info = await call("info")
    assert info == Info("0.1.0", [NodeInfo("n1", 3, 2)])  # an unknown field ("extra") is ignored


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "bad_json", BadRequest),
        (400, "bad_payload", BadRequest),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", ApiError),
        (404, "not_found", NotFound),
        (405, "method_not_allowed", ApiError),
        (413, "too_large", ApiError),
        (500, "internal", ApiError),
        (503, "unavailable", Unavailable),
    ],
)
async def test_every_error_status_raises_its_exception(
    call: Call, fake: FakeApi, status: int, code: str, expected: type[ApiError]
) -> None:
    fake.force = Answer(status, json.dumps({"error": {"code": code, "message": "told you"}}).encode())
    for name, args in [("publish", ("r", 1)), ("presence", ("r",)), ("rooms", ())]:
        with pytest.raises(ApiError) as caught:
            await call(name, *args)
        assert type(caught.value) is expected
        assert (caught.value.code, caught.value.message, caught.value.status) == (code, "told you", status)
        assert str(caught.value) == f"{code}: told you"


async def test_the_fakes_own_refusals_reach_the_caller(kind: str, fake: FakeApi) -> None:
    wrong, wrong_client = _caller(kind, URL, key="nope", fake=fake)
    with pytest.raises(Unauthorized) as caught:
        await wrong("info")
    assert caught.value.code == "unauthorized" and "nope" not in str(caught.value)
    await _close(wrong_client)
    call, client = _caller(kind, URL, fake=fake)
    with pytest.raises(BadRequest) as bad:
        await call("publish", "no spaces allowed", "x")
    assert bad.value.code == "bad_payload" and bad.value.status == 400
    with pytest.raises(ApiError) as large:
        await call("publish", "lobby", "x" * 70_000)
    assert (large.value.code, large.value.status) == ("too_large", 413)
    with pytest.raises(BadRequest):
        await call("disconnect", "ada", code=1000)
    await _close(client)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected", "code"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", Unavailable, "bad_answer"),
        (504, b"<html>Gateway Timeout</html>", "text/html", Unavailable, "bad_answer"),
        (503, b"busy", "text/plain", Unavailable, "unavailable"),
        (404, b"not found\n", "text/plain; charset=utf-8", NotFound, "not_found"),
        (400, b"Unsupported HTTP method: b'POST'", "text/plain", BadRequest, "bad_answer"),
        (200, b"<html>a login page</html>", "text/html", ApiError, "bad_answer"),
        (200, b'{"unexpected": true}', "application/json", ApiError, "bad_answer"),
        (302, b"", "text/html", ApiError, "bad_answer"),
        (500, b"\xff\xfe garbage", "application/octet-stream", ApiError, "internal"),
    ],
)
async def test_an_answer_that_is_not_the_apis_json_raises_by_its_status(
    call: Call, fake: FakeApi, status: int, body: bytes, content_type: str, expected: type[ApiError], code: str
) -> None:
    fake.force = Answer(status, body, content_type)
    with pytest.raises(ApiError) as caught:
        await call("publish", "lobby", "x")
    assert type(caught.value) is expected
    assert (caught.value.code, caught.value.status) == (code, status)
    assert content_type in caught.value.message and "\n" not in caught.value.message
    assert not body or body.decode("utf-8", "replace").split()[0][:10] in caught.value.message
    if status in (400, 404):  # what a server without --api-key answers
        assert "--api-key" in caught.value.message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_connection_is_unavailable_unreachable(kind: str) -> None:
    call, client = _caller(kind, f"http://127.0.0.1:{_closed_port()}", timeout=5.0)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await call("publish", "lobby", "x")
    assert (caught.value.code, caught.value.status) == ("unreachable", 0)
    assert "127.0.0.1" in caught.value.message and time.monotonic() - started < 5
    await _close(client)


async def test_a_server_that_does_not_answer_times_out(kind: str) -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        call, client = _caller(kind, f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await call("info")
        elapsed = time.monotonic() - started
        await _close(client)
    assert (caught.value.code, caught.value.status) == ("timeout", 0)
    assert 0.25 < elapsed < 5


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:8000/ws", "127.0.0.1:8000", "", "ftp://host", "http://", "http://h/?q=1", "http://u:pw@h"],
)
def test_a_url_that_is_not_http_is_a_value_error(url: str) -> None:
    for cls in (ApiClient, AsyncApiClient):
        with pytest.raises(ValueError, match="URL") as caught:
            cls(url, KEY)
        assert "pw" not in str(caught.value)


@pytest.mark.parametrize("key", ["", "two words", "line\nbreak", "caf\u00e9"])
def test_a_key_that_cannot_be_sent_is_a_value_error_that_does_not_show_it(key: str) -> None:
    for cls in (ApiClient, AsyncApiClient):
        with pytest.raises(ValueError, match="API key") as caught:
            cls(URL, key)
        assert not key or key not in str(caught.value)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ApiClient(URL, KEY, timeout=timeout)


async def test_the_key_is_never_in_repr_errors_or_logs(
    kind: str, fake: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-KEY-value"
    fake.keys = (secret,)
    call, client = _caller(kind, URL + "/prefix", key=secret, fake=fake)
    with caplog.at_level(logging.DEBUG):
        await call("publish", "lobby", "x")
        fake.force = Answer(401, b'{"error": {"code": "unauthorized", "message": "no"}}')
        with pytest.raises(Unauthorized) as caught:
            await call("info")
    assert fake.requests[0].path == "/prefix/api/publish"  # a proxy's path prefix is kept
    assert repr(client) == f"{type(client).__name__}('http://hub.test:8000/prefix')"
    texts = [repr(client), str(caught.value), repr(caught.value), caplog.text]
    texts += [str(r.args) for r in caplog.records]
    assert all(secret not in text for text in texts)
    await _close(client)


async def test_one_connection_serves_many_calls(kind: str) -> None:
    fake = FakeApi(keys=(KEY,))
    with serve_fake(fake) as url:
        call, client = _caller(kind, url)
        for n in range(5):
            assert await call("publish", "lobby", n) == n + 1
        await _close(client)
        await _close(client)  # close is idempotent
    assert len(fake.peers) == 5 and len(set(fake.peers)) == 1


async def test_context_managers_close_the_pool() -> None:
    fake = FakeApi(keys=(KEY,))
    with ApiClient(URL, KEY, transport=fake.transport()) as sync:
        assert sync.publish("a", 1) == 1
    with pytest.raises(RuntimeError):
        sync.publish("a", 2)
    async with AsyncApiClient(URL, KEY, transport=fake.transport()) as client:
        assert await client.publish("a", 3) == 2
    with pytest.raises(RuntimeError):
        await client.publish("a", 4)


def _docs_examples() -> dict[str, str]:
    text = (Path(__file__).resolve().parents[3] / "docs" / "api_client.md").read_text()
    return dict(re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```", text, re.S))


def test_the_docs_examples_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    examples = _docs_examples()
    assert sorted(examples) == ["api_async.py", "api_sync.py"]
    fake = FakeApi(keys=("docs-key",))
    monkeypatch.setenv("HUBBUB_API_KEY", "docs-key")
    with serve_fake(fake) as url:
        for name, code in sorted(examples.items()):
            exec(compile(code.replace("http://127.0.0.1:8000", url), name, "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "published at 1" in out and "400 bad_payload" in out and "{'ada': 1, 'bob': 1, 'eve': 1}" in out
    assert fake.closed == [("mallory", 4003, "banned")]
