"""`hubbub` as a user runs it: a real process, signals, flags, env variables, bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.cluster import free_port
from tests.helpers import EventClient


async def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hubbub", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_everyone_with_1001_and_exits_0(sig: signal.Signals) -> None:
    port = free_port()
    proc = _spawn("serve", "--port", str(port))
    await _wait_listening(port, proc)
    clients = [await EventClient.open(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
    for c in clients:
        await c.join("lobby")
    started = time.monotonic()
    proc.send_signal(sig)
    for c in clients:
        await asyncio.wait_for(c.ws.wait_closed(), 5)
        assert c.ws.close_code == 1001
    code = await asyncio.to_thread(proc.wait, 5)
    assert code == 0 and time.monotonic() - started < 5
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in stderr and "server.stopped" in stderr


async def test_env_variables_set_flags() -> None:
    port = free_port()
    proc = _spawn("serve", env={"HUBBUB_PORT": str(port), "HUBBUB_ECHO": "1", "HUBBUB_LOG_FORMAT": "json"})
    try:
        await _wait_listening(port, proc)
        async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 5) == 0
    first = (proc.stderr.read() if proc.stderr else b"").decode().splitlines()[0]
    assert first.startswith("{") and '"event": "server.listening"' in first


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hubbub", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("hubbub ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "70000"], "--port must be between 0 and 65535"),
        (["serve", "--send-queue-bytes", "-5"], "must be a positive integer"),
        (["serve", "--ping-interval", "0"], "must be positive"),
        (["serve", "--send-buffer", "100"], "--send-buffer must be 0"),
        (["serve", "--allowed-origin", "example.com"], "needs a scheme"),
        (["serve", "--log-format", "xml"], "invalid choice"),
        (["serve", "--allow-anonymous"], "--allow-anonymous needs --users"),
        (["serve", "--users", "/nonexistent/users"], "--users: cannot read"),
        (["serve", "--users", "/dev/null", "--ticket-ttl", "0"], "--ticket-ttl must be more than 0"),
        (["serve", "--users", "/dev/null"], "hubbub serve: --users: the file names no user"),
        (["serve", "--shutdown-timeout", "0"], "hubbub serve: --shutdown-timeout must be more than 0 and at most 300"),
        (["serve", "--shutdown-timeout", "nan"], "--shutdown-timeout must be more than 0"),
        (["serve", "--shutdown-timeout", "301"], "--shutdown-timeout must be more than 0"),
    ],
)
def test_bad_flags_get_a_message_and_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True, text=True)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "hubbub", "serve", "--port", str(port)], capture_output=True, text=True, timeout=10
        )
    assert out.returncode == 1
    assert "cannot listen" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["serve", "--port", "abc"], "hubbub serve: --port: invalid int value: 'abc'"),
        (["serve", "--prot", "8000"], "hubbub serve: unrecognized arguments: --prot 8000"),
        (["serve", "--port", "70000"], "hubbub serve: --port must be between 0 and 65535, not 70000"),
        (["chat", "--room"], "hubbub chat: --room: expected one argument"),
        (["bench", "F9"], "hubbub bench: scenario: invalid choice: 'F9' (choose from 'F1', 'F2', 'F3', 'F4', 'smoke')"),
        (["bench", "--clients", "x"], "hubbub bench: --clients: invalid int value: 'x'"),
        (
            ["bench", "--url", "http://127.0.0.1:8000/"],
            "hubbub bench: http://127.0.0.1:8000/ is a web page's URL: a hub's WebSocket URL is ws://127.0.0.1:8000/ws",
        ),
        (["token"], "hubbub token: the following arguments are required: --sub"),
        (["nope"], "hubbub: unknown command 'nope' (choose from 'serve', 'bench', 'chat', "),
        ([], "hubbub: choose a command: serve, bench, chat, "),
    ],
)
def test_a_bad_command_line_is_one_line_naming_the_subcommand_and_exit_2(args: list[str], line: str) -> None:
    """No usage block: one line that names the subcommand and the flag, as the README promises
    (the list of commands is matched by its start: other commands may join it)."""
    out = subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.startswith(line) and out.stderr.count("\n") == 1 and "usage" not in out.stderr


def test_shutdown_timeout_is_a_flag_and_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/integration.md and docs/security.md refer to `--shutdown-timeout`: it exists, reaches `Settings`."""
    from hubbub.cli.main import build_parser, parse_args
    from hubbub.cli.settings import settings_from

    assert settings_from(parse_args(build_parser(), ["serve"])).shutdown_timeout == 3.0
    assert settings_from(parse_args(build_parser(), ["serve", "--shutdown-timeout", "7.5"])).shutdown_timeout == 7.5
    monkeypatch.setenv("HUBBUB_SHUTDOWN_TIMEOUT", "12")
    assert settings_from(parse_args(build_parser(), ["serve"])).shutdown_timeout == 12.0
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HUBBUB_SHUTDOWN_TIMEOUT": "soon"},
    )
    assert (out.returncode, out.stderr) == (2, "hubbub serve: HUBBUB_SHUTDOWN_TIMEOUT: invalid value 'soon'\n")


def test_a_bad_environment_variable_is_one_line_too() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HUBBUB_PORT": "abc"},
    )
    assert (out.returncode, out.stderr) == (2, "hubbub serve: HUBBUB_PORT: invalid value 'abc'\n")


async def _start_line(proc: subprocess.Popen[bytes]) -> str:
    """The first line the server prints on stdout (within a bound)."""
    assert proc.stdout is not None
    line: bytes = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    return line.decode()


async def test_startup_prints_the_url_to_open() -> None:
    port = free_port()
    proc = _spawn("serve", "--port", str(port), "--log-format", "json")
    try:
        line = await _start_line(proc)
        assert line == f"hubbub: serving http://127.0.0.1:{port}/ (chat page), ws://127.0.0.1:{port}/ws\n"
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 10) == 0
    assert (proc.stderr.read() if proc.stderr else b"").startswith(b"{")  # the logs stay JSON lines for machines


async def test_startup_line_on_all_interfaces_names_a_host_a_browser_can_open() -> None:
    port = free_port()
    proc = _spawn("serve", "--host", "0.0.0.0", "--port", str(port), "--allowed-host", "chat.example.com")
    try:
        line = await _start_line(proc)
        assert line == f"hubbub: serving http://chat.example.com:{port}/ (chat page), ws://chat.example.com:{port}/ws\n"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


APP_SCRIPT = """
import hubbub

hub = hubbub.Hub(hubbub.Settings(port={port}))


@hub.on("ping")
def ping(payload: object, client: hubbub.Connection) -> dict[str, str]:
    return {{"pong": "yes"}}


hubbub.run(hub)
print("run returned")
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_hubbub_run_prints_its_start_line_and_stops_cleanly(sig: signal.Signals, tmp_path: Path) -> None:
    """`hubbub.run(hub)` from a script: the start line, the app answering, then Ctrl-C (or SIGTERM):
    every client closed with 1001, exit 0, no traceback."""
    port = free_port()
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT.format(port=port))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = await _start_line(proc)
        assert line == f"hubbub: serving http://127.0.0.1:{port}/ (chat page), ws://127.0.0.1:{port}/ws\n"
        client = await EventClient.open(f"ws://127.0.0.1:{port}/ws")
        assert (await client.request("ping", {}))["payload"] == {"pong": "yes"}
        proc.send_signal(sig)
        await asyncio.wait_for(client.ws.wait_closed(), 10)
        assert client.ws.close_code == 1001
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out, err = (proc.stdout.read() if proc.stdout else b""), (proc.stderr.read() if proc.stderr else b"")
    assert out == b"run returned\n" and b"Traceback" not in err, err


def test_hubbub_run_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        script = tmp_path / "app.py"
        script.write_text(APP_SCRIPT.format(port=s.getsockname()[1]))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stdout == ""
    assert "hubbub: cannot listen on 127.0.0.1:" in out.stderr and "Traceback" not in out.stderr


async def test_the_readme_custom_event_example_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """It prints its start line, and Ctrl-C stops it without a traceback."""
    from tests.integration.test_client import readme_example

    port = free_port()
    source = readme_example("typing_app.py")
    assert "Settings(port=8000)" in source and "hubbub.run(hub)" in source
    script = tmp_path / "typing_app.py"
    script.write_text(source.replace("Settings(port=8000)", f"Settings(port={port})"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert await _start_line(proc) == (
            f"hubbub: serving http://127.0.0.1:{port}/ (chat page), ws://127.0.0.1:{port}/ws\n"
        )
        client = await EventClient.open(f"ws://127.0.0.1:{port}/ws")
        await client.join("lobby")
        ack = await client.request("typing", {"room": "lobby", "active": True})
        assert ack["type"] == "ack" and ack["payload"] == {"room": "lobby"}
        assert (await client.recv_type("typing_seen"))["payload"] == {"room": "lobby"}
        refused = await client.request("typing", {"room": "elsewhere", "active": True})
        assert refused["payload"]["code"] == "not_in_room"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
