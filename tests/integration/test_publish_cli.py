"""`hubbub publish` as a shell script runs it: a real process against an HTTP server on loopback.

The server is the contract's fake (tests/api_fake.py) in a thread of the test:
it checks the key and the body as the real server does, and records what it
got, so each test asserts both what the command printed and what it sent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.api_fake import Answer, FakeApi, serve_fake


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "HUBBUB_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "hubbub", "publish", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubbub publish: "), result.stderr
    return lines[0]


def test_publish_prints_the_offset_and_sends_the_contract_request() -> None:
    fake = FakeApi(keys=("k1",))
    with serve_fake(fake) as url:
        first = _run(url, "--room", "lobby", "--message", '{"text": "deployed", "n": 3}', "--api-key", "k1")
        second = _run(url, "--room", "lobby", "--message", "plain words", "--from", "ci", "--api-key", "k1")
    assert (first.returncode, first.stdout, first.stderr) == (0, "1\n", "")
    assert (second.returncode, second.stdout) == (0, "2\n")
    request = fake.requests[0]
    assert (request.method, request.path) == ("POST", "/api/publish")
    assert request.headers["authorization"] == "apikey k1"
    assert json.loads(request.body) == {"room": "lobby", "message": {"text": "deployed", "n": 3}}
    assert json.loads(fake.requests[1].body) == {"room": "lobby", "message": "plain words", "from": "ci"}


def test_the_key_comes_from_the_environment_and_the_flag_wins() -> None:
    fake = FakeApi(keys=("k2",))
    with serve_fake(fake) as url:
        from_env = _run(url, "--room", "r", "--message", "42", env={"HUBBUB_API_KEY": "k2,k9"})
        flag_wins = _run(url, "--room", "r", "--message", '"42"', "--api-key", "k2", env={"HUBBUB_API_KEY": "bad"})
    assert (from_env.returncode, from_env.stdout) == (0, "1\n")
    assert (flag_wins.returncode, flag_wins.stdout) == (0, "2\n")
    assert [json.loads(r.body)["message"] for r in fake.requests] == [42, "42"]  # JSON when it parses
    assert [r.headers["authorization"] for r in fake.requests] == ["apikey k2", "apikey k2"]


def test_a_refusal_is_one_line_and_exit_1() -> None:
    fake = FakeApi(keys=("k1",))
    with serve_fake(fake) as url:
        wrong_key = _run(url, "--room", "lobby", "--message", "x", "--api-key", "nope")
        bad_room = _run(url, "--room", "no spaces", "--message", "x", "--api-key", "k1")
        fake.force = Answer(502, b"<html>\n<h1>502 Bad Gateway</h1>\n</html>\n", "text/html")
        proxy = _run(url, "--room", "lobby", "--message", "x", "--api-key", "k1")
    assert wrong_key.returncode == 1 and _one_line(wrong_key).startswith("hubbub publish: unauthorized: ")
    assert "nope" not in wrong_key.stderr
    assert bad_room.returncode == 1 and _one_line(bad_room).startswith("hubbub publish: bad_payload: ")
    assert proxy.returncode == 1 and "502" in _one_line(proxy) and "text/html" in proxy.stderr


def test_an_unreachable_server_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _run(f"http://127.0.0.1:{port}", "--room", "lobby", "--message", "x", "--api-key", "k1")
    assert result.returncode == 1
    assert _one_line(result).startswith("hubbub publish: unreachable: ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["http://127.0.0.1:9", "--room", "r", "--message", "x"], "--api-key or HUBBUB_API_KEY"),
        (["http://127.0.0.1:9", "--message", "x", "--api-key", "k"], "--room"),
        (["--room", "r", "--message", "x", "--api-key", "k"], "the URL"),
        (["ws://127.0.0.1:9/ws", "--room", "r", "--message", "x", "--api-key", "k"], "http://"),
        (
            ["http://127.0.0.1:9/ws", "--room", "r", "--message", "x", "--api-key", "k"],
            "base URL, e.g. http://127.0.0.1:9,",
        ),
        (["http://127.0.0.1:9/api/publish", "--room", "r", "--message", "x", "--api-key", "k"], "base URL"),
        (["http://127.0.0.1:9", "--room", "r", "--message", "x", "--api-key", "k", "--timeout", "0"], "timeout"),
        (["http://127.0.0.1:9", "--room", "r", "--message", "x", "--api-key", "two words"], "API key"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert says in _one_line(result)
