"""docs/tutorial.md, step by step: every program of Part 1 run as the page says, then the same on hubbub.

Each step (`examples/learn/tutorial/stepN_*.py`) runs as a subprocess from the repository root,
`python -m examples.learn.tutorial.stepN_... --port P`; the page's clients (`say`, `slow_reader`)
run as subprocesses too, and the tests check the lines the page shows, on real sockets.
Part 2 runs `hubbub serve --app examples.tutorial:hub` with the flags of each step, and the same
clients against it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.auth.passwords import hash_password
from tests.cluster import free_port
from tests.integration.test_tls import tls_files as tls_files  # the module's self-signed certificate

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
pytestmark = pytest.mark.timeout(90)

SEND = '{"type":"send_message","payload":{"message":"hi","from":"percy"}}'
DANCE = '{"type":"dance","payload":{}}'


class Server:
    """A step (or hubbub) running as a subprocess; its output so far, as the page shows it."""

    def __init__(self, argv: list[str], log: Path, ready: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while ready not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"never ready: {self.output()}"
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} never came: {self.output()}"
            time.sleep(0.05)
        return self.output()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


StartStep = Callable[..., tuple[Server, str]]


@pytest.fixture
def step(tmp_path: Path) -> Iterator[StartStep]:
    """`step("step1_manager", *flags)` starts that step on a free port: the server and its ws:// URL."""
    started: list[Server] = []

    def start(name: str, *flags: str, scheme: str = "ws") -> tuple[Server, str]:
        port = free_port()
        argv = [sys.executable, "-m", f"examples.learn.tutorial.{name}", "--port", str(port), *flags]
        server = Server(argv, tmp_path / f"{name}-{port}.log", "listening on")
        started.append(server)
        return server, f"{scheme}://127.0.0.1:{port}/ws"

    yield start
    for server in started:
        server.stop()


def client(name: str, *args: str) -> str:
    """Run one of the page's clients to the end; what it printed."""
    argv = [sys.executable, "-m", f"examples.learn.tutorial.{name}", *args]
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def received(output: str) -> list[dict[str, Any]]:
    return [json.loads(line[2:]) for line in output.splitlines() if line.startswith("< ")]


def slow_reader(url: str) -> tuple[str, int, int]:
    """The stalled reader's address, then how many of 5000 the sender sent and the reader got."""
    out = client("slow_reader", "--url", url)
    stalled = re.search(r"stalled reader (\S+),", out)
    sent = re.search(r"the sender sent (\d+) of 5000", out)
    got = re.search(r"the reader that keeps up got (\d+) of 5000", out)
    assert stalled and sent and got, out
    return stalled.group(1), int(sent.group(1)), int(got.group(1))


# ---- Part 1: built up on the textbook's library, websockets


def test_step1_the_manager_registers_prints_and_unregisters(step: StartStep) -> None:
    server, url = step("step1_manager")
    assert client("say", "--url", url, "--wait", "0.2", "hello") == "still open\n"  # nothing is written back
    log = server.wait_for("(0 clients)")
    assert re.search(r"registered 127\.0\.0\.1:\d+ \(1 clients\)", log)
    assert re.search(r"127\.0\.0\.1:\d+ says 'hello'", log)
    assert re.search(r"unregistered 127\.0\.0\.1:\d+ \(0 clients\)", log)


def test_step2_one_stalled_reader_freezes_everyone_who_writes_to_it(step: StartStep) -> None:
    """No panic and no torn frame: the sender's read loop waits in send() for the reader that stopped."""
    server, url = step("step2_unsafe_broadcast")
    _, sent, got = slow_reader(url)
    assert got < 5000 and sent < 5000, (sent, got)
    log = server.wait_for("sends waiting")
    held = re.search(r"memory: (\d+) KiB unsent in buffers, 0 sends waiting", log)
    assert held and 32 <= int(held.group(1)) <= 40, log  # websockets' write limit, 32 KiB, and one message


def test_step2_fire_and_forget_never_stops_and_never_bounds_memory(step: StartStep) -> None:
    server, url = step("step2_unsafe_broadcast", "--fire-and-forget")
    _, sent, got = slow_reader(url)
    assert (sent, got) == (5000, 5000)
    deadline = time.monotonic() + 10  # the server reports once a second: wait for the report after the last send

    def most(pattern: str) -> int:
        return max((int(n) for n in re.findall(pattern, server.output())), default=0)

    while most(r"memory: (\d+) KiB unsent") <= 8 * 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert most(r"memory: (\d+) KiB unsent") > 8 * 1024, server.output()  # megabytes, for a reader that takes none
    assert most(r"(\d+) sends waiting") > 1000, server.output()


def test_step3_the_stalled_reader_is_dropped_and_the_others_get_everything(step: StartStep) -> None:
    server, url = step("step3_egress")
    stalled, sent, got = slow_reader(url)
    assert (sent, got) == (5000, 5000)
    log = server.wait_for(f"dropped {stalled}: 256 messages waiting, it stopped reading")
    assert log.count("dropped ") == 1, log


def test_step4_events_are_routed_by_type_and_refusals_keep_the_connection(step: StartStep) -> None:
    _, url = step("step4_events")
    out = client("say", "--url", url, SEND, DANCE, "nope")
    events = received(out)
    assert [e["type"] for e in events] == ["new_message", "error", "error"]
    assert {k: v for k, v in events[0]["payload"].items() if k != "sent"} == {"message": "hi", "from": "percy"}
    assert [e["payload"]["code"] for e in events[1:]] == ["unknown_type", "bad_json"]
    assert out.endswith("still open\n")


def test_step4_change_room_moves_a_client_out_of_general(step: StartStep) -> None:
    _, url = step("step4_events")
    moved = client("say", "--url", url, '{"type":"change_room","payload":{"name":"lobby"}}', SEND)
    assert [e["payload"]["message"] for e in received(moved)] == ["hi"]


def test_step5_read_limit_origin_and_heartbeat(step: StartStep) -> None:
    flags = ("--ping-interval", "1", "--ping-timeout", "1", "--allowed-origin", "https://localhost:8080")
    server, url = step("step5_hardened", *flags)
    assert client("say", "--url", url, "--size", "513").startswith("closed: 1009")
    assert client("say", "--url", url, "--size", "512", "--wait", "0.2").endswith("still open\n")
    assert client("say", "--url", url, "--origin", "https://evil.example") == "refused: HTTP 403\n"
    assert client("say", "--url", url, "--origin", "https://localhost:8080", "--wait", "0.2") == "still open\n"
    assert client("say", "--url", url, "--silent", "--wait", "4") == "closed: 1011 keepalive ping timeout\n"
    server.wait_for("close 1011")
    assert client("say", "--url", url, "--wait", "3") == "still open\n"  # a peer that answers pings stays


def test_step6_one_time_passwords_and_tls(step: StartStep, tls_files: tuple[Path, Path]) -> None:
    cert, key = (str(p) for p in tls_files)
    _, url = step("step6_login_tls", "--tls-cert", cert, "--tls-key", key, scheme="wss")
    trust = ("--url", url, "--cafile", cert)
    out = client("say", *trust, "--login", "percy:123", SEND.replace("percy", "someone else"))
    assert [e["payload"]["from"] for e in received(out)] == ["percy"]
    assert client("say", *trust) == "refused: HTTP 401\n"  # no one-time password
    assert client("say", *trust, "--login", "percy:124") == "login refused: HTTP 401\n"
    assert client("say", *trust, "--login", "percy:123", "--size", "513").startswith("closed: 1009")  # step 5 kept
    login = urllib.request.Request(url.replace("wss://", "https://").replace("/ws", "/login"))
    login.add_header("Authorization", "Basic " + base64.b64encode(b"percy:123").decode())
    with urllib.request.urlopen(login, context=ssl.create_default_context(cafile=cert), timeout=5) as answer:
        assert list(json.load(answer)) == ["otp"]  # what curl -u percy:123 shows


# ---- Part 2: the same steps on hubbub


@pytest.fixture
def hubbub_tutorial(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[str]:
    """hubbub serve --app examples.tutorial:hub with every step's flags, as Part 2 runs it; its wss:// URL."""
    users = tmp_path / "users"
    users.write_text(f"percy:{hash_password('123')}\n")
    port = free_port()
    argv = [sys.executable, "-m", "hubbub", "serve", "--port", str(port), "--app", "examples.tutorial:hub"]
    argv += ["--ping-interval", "1", "--ping-timeout", "1", "--max-message-size", "512"]
    argv += ["--allowed-origin", "https://localhost:8080", "--users", str(users)]
    argv += ["--tls-cert", str(tls_files[0]), "--tls-key", str(tls_files[1])]
    server = Server(argv, tmp_path / "hubbub.log", "server.listening")
    try:
        yield f"wss://127.0.0.1:{port}/ws"
    finally:
        server.stop()


def test_part2_the_same_steps_on_hubbub(hubbub_tutorial: str, tls_files: tuple[Path, Path]) -> None:
    trust = ("--url", hubbub_tutorial, "--cafile", str(tls_files[0]))
    login = ("--post-login", "percy:123")
    events = received(client("say", *trust, *login, SEND.replace("percy", "someone else"), DANCE))
    assert sorted(str(e["type"]) for e in events) == ["error", "new_message"]
    message = next(e["payload"] for e in events if e["type"] == "new_message")
    assert message["from"] == "percy" and message["room"] == "general"
    assert client("say", *trust) == "refused: HTTP 401\n"
    assert client("say", *trust, "--post-login", "percy:124") == "login refused: HTTP 401\n"
    assert client("say", *trust, *login, "--size", "513").startswith("closed: 1009")
    assert client("say", *trust, *login, "--origin", "https://evil.example") == "refused: HTTP 403\n"
    assert client("say", *trust, *login, "--silent", "--wait", "4") == "closed: 1006\n"  # dropped without a close
