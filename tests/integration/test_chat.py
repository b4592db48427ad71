"""`hubbub chat` as a person uses it: every command answers, the connection's life shows, and a bad
URL or a dead hub is one line within a bounded time. In process (a pipe for stdin) and as a real
process, on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from hubbub.auth.tokens import mint_token
from hubbub.cli.main import build_parser
from hubbub.client import chat
from hubbub.client.client import Client, InvalidURL
from hubbub.server.server import Server
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url

HUBBUB = (sys.executable, "-m", "hubbub")


def _messages(history: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["from"], m["message"]) for m in history["payload"]["messages"]]


async def test_every_command_does_what_it_says_or_answers_with_help(server: Server) -> None:
    typed = [
        "/help",
        "/frobnicate",
        "/room",
        "/join",
        "/join bad room",
        "/join other",
        "/room",
        "/who lobby",
        "/leave other",
        "/leave other",
        "/room nowhere",
        "//slash text",
        "hello",
        "/history",
        "/leave",
        "into the void",
        "/who",
        "/quit",
        "after quit",
    ]
    out = io.StringIO()
    async with asyncio.timeout(20):
        code = await chat.run(ws_url(server), "lobby", "ada", io.StringIO("\n".join(typed) + "\n"), out)
    assert code == 0
    lines = out.getvalue().splitlines()
    expected = [
        f"* connected to {ws_url(server)} as ada; /help lists the commands",
        "* joined #lobby; talking there now",
        "* commands:",
        "*   /join ROOM       join ROOM and talk there",
        "* unknown command /frobnicate; /help lists the commands (//text sends /text as a message)",
        "* talking in #lobby; joined: #lobby; /room ROOM switches, /join ROOM joins",
        "* which room? /join ROOM, where ROOM is 1 to 128 letters, digits and _ - . : @ (no spaces)",
        "* 'bad room' is not a room name: use 1 to 128 letters, digits and _ - . : @ (no spaces)",
        "* joined #other; talking there now",
        "* talking in #other; joined: #lobby, #other; /room ROOM switches, /join ROOM joins",
        "* in #lobby: ada (1)",
        "* left #other; talking in #lobby",
        "* you are not in #other (you are in #lobby)",
        "* you are not in #nowhere: /join nowhere first",
        "* the last 2 messages of #lobby",
        "* left #lobby; you are in no room: /join ROOM",
        "* you are in no room: /join ROOM first",
        "* you are in no room: /who ROOM, or /join ROOM first",
    ]
    at = [lines.index(line) for line in expected]  # each is there ...
    assert at == sorted(at)  # ... in the order typed
    assert not any("regex" in line or "Expected `str`" in line for line in lines)
    # Only the two chat lines reached the room; no command was sent as text.
    reader = await EventClient.open(ws_url(server))
    await reader.join("lobby")
    history = await reader.request("get_history", {"room": "lobby"})
    assert _messages(history) == [("ada", "/slash text"), ("ada", "hello")]
    await reader.close()


async def test_a_token_in_the_url_is_never_printed_and_the_hub_names_the_chat(make_server: ServerFactory) -> None:
    """`hubbub chat "ws://.../ws?token=T"`: T shows nowhere, and the chat does not claim a name the hub
    will not use: its own join shows the name the token gives."""
    server = await make_server(auth_secret="s" * 32)
    token = mint_token("s" * 32, "alice", ttl=60)
    keys, out = _Pipe(), io.StringIO()
    session = asyncio.create_task(chat.run(ws_url(server, query=f"token={token}"), "lobby", "guest", keys.stream, out))
    try:
        keys.type("hello")
        keys.type("/history")
        # Its own join is announced with the room's next presence flush (`presence_interval`), not at once.
        await eventually(lambda: "* alice joined #lobby" in out.getvalue(), timeout=10)
        await eventually(lambda: "* the last 1 message of #lobby" in out.getvalue(), timeout=10)
    finally:
        keys.close()
    async with asyncio.timeout(20):
        code = await session
    text = out.getvalue()
    assert code == 0 and token not in text and token.split(".")[2] not in text
    first = text.splitlines()[0]
    assert first == (
        f"* connected to {ws_url(server)}?token=*** by the name your credential gives (the hub decides it);"
        " /help lists the commands"
    )
    assert "* alice joined #lobby" in text and "#lobby alice: hello" in text and "guest" not in text
    assert "* the last 1 message of #lobby" in text.splitlines()  # one message, not "1 messages"


def test_credentials_in_a_bad_url_are_not_repeated() -> None:
    for url in ("https://hub.example/?token=SECRET", "ftp://hub.example/ws?ticket=SECRET&otp=SECRET"):
        with pytest.raises(InvalidURL) as bad:
            Client(url)
        assert "SECRET" not in str(bad.value) and "=***" in str(bad.value)


def test_the_name_defaults_to_guest_when_user_is_empty_and_the_help_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "")
    parser = build_parser()
    assert parser.parse_args(["chat"]).name == "guest"
    monkeypatch.delenv("USER")
    assert build_parser().parse_args(["chat"]).name == "guest"
    out = _chat("--help")
    assert out.returncode == 0 and "guest when $USER is unset or empty" in " ".join(out.stdout.split())


class _Pipe:
    """A stdin the test types into, line by line, while the chat runs."""

    def __init__(self) -> None:
        r, self._w = os.pipe()
        self.stream = os.fdopen(r, "r")

    def type(self, line: str) -> None:
        os.write(self._w, (line + "\n").encode())

    def close(self) -> None:
        os.close(self._w)


async def test_a_line_typed_while_disconnected_is_kept_and_sent_after_the_reconnect(
    make_server: ServerFactory,
) -> None:
    first = await make_server()
    port = first.port
    keys, out = _Pipe(), io.StringIO()
    session = asyncio.create_task(chat.run(ws_url(first), "lobby", "bo", keys.stream, out))
    try:
        await eventually(lambda: "* joined #lobby" in out.getvalue(), timeout=10)
        await first.stop()
        await eventually(lambda: "* disconnected: the hub closed the connection (1001: going away)" in out.getvalue())
        keys.type("said while down")
        keys.type("and again")
        keys.type("/who")
        await eventually(lambda: "/who needs the hub" in out.getvalue())
        assert "* not connected: this line goes to #lobby after the reconnect (1 waiting)" in out.getvalue()
        assert "* not connected: this line goes to #lobby after the reconnect (2 waiting)" in out.getvalue()
        second = await make_server(port=port)
        await eventually(lambda: "* sent 2 lines typed while disconnected" in out.getvalue(), timeout=20)
        assert "* reconnected" in out.getvalue().splitlines()
        keys.type("back online")
        await eventually(lambda: "#lobby bo: back online" in out.getvalue())
        reader = await EventClient.open(ws_url(second))
        await reader.join("lobby")
        history = _messages(await reader.request("get_history", {"room": "lobby"}))
        assert history == [("bo", "said while down"), ("bo", "and again"), ("bo", "back online")]
        await reader.close()
        keys.type("/quit")
        assert await asyncio.wait_for(session, 10) == 0
    finally:
        keys.close()
        if not session.done():
            session.cancel()


def _chat(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HUBBUB, "chat", *args], input=stdin, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["127.0.0.1:8000"], "hubbub chat: '127.0.0.1:8000' has no scheme: write ws://127.0.0.1:8000/ws"),
        (["ftp://127.0.0.1/ws"], "hubbub chat: ftp://127.0.0.1/ws: the scheme must be ws:// or wss://, not ftp://"),
        (["--room", "a b"], "hubbub chat: --room: 'a b' is not a room name: use 1 to 128 letters, digits"),
    ],
)
def test_a_url_or_room_that_cannot_work_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    out = _chat(*args)
    assert out.returncode == 2 and out.stderr.startswith(line) and out.stderr.count("\n") == 1, out.stderr


def test_a_dead_port_is_one_line_and_exit_1_within_a_bounded_time() -> None:
    started = time.monotonic()
    out = _chat(f"ws://127.0.0.1:{free_port()}/ws")
    assert time.monotonic() - started < 15
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("hubbub chat: no connection to ws://127.0.0.1:") and "Connection refused" in out.stderr


async def test_a_refused_handshake_is_one_line_with_its_status(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret="s" * 32)
    out = await asyncio.to_thread(_chat, ws_url(server))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "hubbub chat: the hub refused the connection: HTTP 401 Unauthorized" in out.stderr


async def test_a_url_without_the_hub_path_or_an_unknown_host_is_one_line_saying_so(server: Server) -> None:
    """`ws://host:port/` reaches the chat page, not the hub; `https://NAME/` that does not resolve names the host."""
    out = await asyncio.to_thread(_chat, f"ws://127.0.0.1:{server.port}/")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("hubbub chat: the hub refused the connection: HTTP 200 OK: no hub at this path")
    started = time.monotonic()
    out = await asyncio.to_thread(_chat, "https://hub.example.invalid/")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "the host name hub.example.invalid was not found" in out.stderr and "Unknown error" not in out.stderr
    assert time.monotonic() - started < 25


async def test_the_page_url_is_taken_for_its_hub(server: Server) -> None:
    page = f"http://127.0.0.1:{server.port}/"
    out = await asyncio.to_thread(_chat, page, "--name", "cy", stdin="hi\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert f"* {page} is the hub's page; chatting on ws://127.0.0.1:{server.port}/ws" in out.stdout
    assert "#lobby cy: hi" in out.stdout


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break


def _on_a_terminal(port: int, name: str) -> tuple[subprocess.Popen[bytes], int]:
    """`hubbub chat` with a pseudo-terminal for stdin and stdout, as in a terminal window."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*HUBBUB, "chat", f"ws://127.0.0.1:{port}/ws", "--name", name],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    return proc, master


async def test_on_a_real_terminal_help_a_message_and_ctrl_d(server: Server) -> None:
    proc, master = await asyncio.to_thread(_on_a_terminal, server.port, "dee")
    seen = bytearray()
    try:
        await asyncio.to_thread(_read_until, master, b"* joined #lobby", seen)
        os.write(master, b"/help\n")
        await asyncio.to_thread(_read_until, master, b"/quit            leave the chat", seen)
        os.write(master, b"typed on a tty\n")
        await asyncio.to_thread(_read_until, master, b"#lobby dee: typed on a tty", seen)
        os.write(master, b"\x04")  # Ctrl-D: end of input
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert b"Traceback" not in seen


async def test_a_hub_that_refuses_the_reconnect_ends_the_chat_saying_why(make_server: ServerFactory) -> None:
    """The hub came back wanting logins: retrying cannot help, so the chat says so and exits 1."""
    first = await make_server()
    port = first.port
    keys, out = _Pipe(), io.StringIO()
    session = asyncio.create_task(chat.run(ws_url(first), "lobby", "cy", keys.stream, out))
    try:
        await eventually(lambda: "* joined #lobby" in out.getvalue(), timeout=10)
        await first.stop()
        await make_server(port=port, auth_secret="s" * 32)
        assert await asyncio.wait_for(session, 20) == 1
    finally:
        keys.close()
        if not session.done():
            session.cancel()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("* giving up: the hub refused the connection: HTTP 401 Unauthorized"), last
