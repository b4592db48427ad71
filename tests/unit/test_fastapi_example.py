"""examples/fastapi_app's side of the contract with hubbub, without hubbub: what its connect proxy,
publish proxy and webhook endpoints answer to signed and unsigned requests (the browser test,
tests/e2e/test_fastapi_example.py, runs the whole thing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
from examples.fastapi_app.accounts import COOKIE, Sessions
from examples.fastapi_app.app import ROOMS, Config, create_app
from fastapi.testclient import TestClient

from hubbub.auth.signing import HEADER, sign

SECRET = "the webhook secret"
CONFIG = Config(("http://127.0.0.1:9",), "http://127.0.0.1:9", "k" * 20, SECRET, b"s" * 32)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(CONFIG), base_url="http://127.0.0.1:8000") as client:
        yield client


def _from_hubbub(client: TestClient, path: str, body: Any, secret: str | None = SECRET) -> Any:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = sign(secret, data)
    return client.post(path, content=data, headers=headers)


def _cookie_of(client: TestClient, user: str, password: str) -> str:
    answer = client.post("/login", json={"username": user, "password": password})
    assert answer.status_code == 200
    set_cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    return f"other=1; {COOKIE}={answer.cookies[COOKIE]}"


def test_the_connect_proxy_admits_the_apps_session_and_refuses_the_rest(client: TestClient) -> None:
    cookie = _cookie_of(client, "alice", "wonderland")
    asked = {"client": "127.0.0.1:5000", "query": {}, "headers": {"Cookie": cookie}}
    answer = _from_hubbub(client, "/hubbub/connect", asked)
    assert answer.status_code == 200
    assert answer.json() == {"user": "alice", "rooms": list(ROOMS), "info": {"display": "Alice"}}
    assert _from_hubbub(client, "/hubbub/connect", asked, secret=None).status_code == 403
    assert _from_hubbub(client, "/hubbub/connect", asked, secret="another").status_code == 403
    for headers in ({}, {"Cookie": cookie[:-3] + "abc"}, {"Cookie": f"{COOKIE}=garbage"}):
        assert _from_hubbub(client, "/hubbub/connect", {**asked, "headers": headers}).status_code == 401
    expired = Sessions(CONFIG.session_secret, ttl=-1).cookie_value("alice")
    late = {**asked, "headers": {"Cookie": f"{COOKIE}={expired}"}}
    assert _from_hubbub(client, "/hubbub/connect", late).status_code == 401


def test_a_wrong_password_is_401_and_the_history_needs_a_login(client: TestClient) -> None:
    assert client.post("/login", json={"username": "alice", "password": "nope"}).status_code == 401
    assert client.post("/login", json={"username": "nobody", "password": "nope"}).status_code == 401
    assert client.get("/rooms/lobby/messages").status_code == 401
    _cookie_of(client, "bob", "builder")  # the client keeps the cookie
    assert client.get("/rooms/lobby/messages").json() == {"room": "lobby", "messages": []}
    assert client.get("/rooms/elsewhere/messages").status_code == 404


def test_the_publish_proxy_refuses_banned_words_and_lets_only_text_through(client: TestClient) -> None:
    def judged(message: Any, secret: str | None = SECRET) -> Any:
        return _from_hubbub(client, "/hubbub/publish", {"user": "bob", "room": "lobby", "message": message}, secret)

    assert judged({"text": "Well, DARN it!"}).status_code == 403
    assert judged({"text": "   "}).status_code == 403
    assert judged("just a string").status_code == 403
    assert judged({"text": "hello"}, secret=None).status_code == 403
    forged = judged({"text": "  hello  ", "notice": "I am the admin", "by": "Alice"})
    assert (forged.status_code, forged.json()) == (200, {"message": {"text": "hello"}})


def test_webhooks_store_each_message_once_in_offset_order(client: TestClient) -> None:
    _cookie_of(client, "bob", "builder")

    def event(id_: str, offset: int, text: str) -> dict[str, Any]:
        fields = {"room": "lobby", "offset": offset, "from": "bob", "message": {"text": text}, "sent": "x"}
        return {"id": id_, "type": "message", "time": "2026-12-05T23:10:04.512Z", **fields}

    for body in (event("b", 2, "second"), event("a", 1, "first"), event("b", 2, "second")):  # crossed, repeated
        assert _from_hubbub(client, "/hubbub/events", body).status_code == 200
    assert _from_hubbub(client, "/hubbub/events", event("c", 3, "forged"), secret=None).status_code == 401
    stored = client.get("/rooms/lobby/messages").json()["messages"]
    assert [(m["offset"], m["message"]["text"]) for m in stored] == [(1, "first"), (2, "second")]
    joined = {"id": "d", "type": "member_joined", "time": "2026-12-05T23:10:05.000Z", "room": "lobby", "user": "bob"}
    for _ in range(2):  # a retry of an event already handled (its answer was lost) is not handled again
        assert _from_hubbub(client, "/hubbub/events", joined).status_code == 200
    assert client.get("/activity").json()["activity"] == [
        {"type": "member_joined", "room": "lobby", "user": "bob", "time": "2026-12-05T23:10:05.000Z"}
    ]
