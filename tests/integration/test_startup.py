"""`hubbub serve` when its broker cannot be had: real processes, real sockets, bounded in time.

An unreachable broker or store is exit code 1 and one line within a few
seconds; a signal during start-up ends it at once; a backend whose extra is
not installed is one line saying what to install, exit code 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.backends.redis_pool import STARTUP_TIMEOUT
from tests.cluster import free_port

pytestmark = pytest.mark.timeout(30)
REDIS = "redis://127.0.0.1:6379/0"


class Silent:
    """A TCP server that accepts connections and never says a word: a broker that hangs."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()


@pytest.fixture
async def silent() -> AsyncIterator[tuple[Silent, int]]:
    peer = Silent()
    server = await asyncio.start_server(peer._accept, "127.0.0.1", 0)
    yield peer, server.sockets[0].getsockname()[1]
    for writer in peer._writers:
        writer.close()
    server.close()


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", "--port", str(free_port()), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def _finish(proc: subprocess.Popen[bytes], within: float) -> tuple[int, list[str]]:
    code = await asyncio.to_thread(proc.wait, within)
    assert proc.stderr is not None
    return code, proc.stderr.read().decode().strip().splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "redis://127.0.0.1:{port}/0"], "cannot reach Redis at redis://127.0.0.1:{port}/0: "),
        (["--broker", "nats://127.0.0.1:{port}", "--store", REDIS], "cannot reach NATS at nats://127.0.0.1:{port}: "),
        (
            ["--broker", "nats://127.0.0.1:4222", "--store", "redis://:hunter2@127.0.0.1:{port}/0"],
            "cannot reach the Redis store at redis://:***@127.0.0.1:{port}/0: ",
        ),
    ],
    ids=["redis", "nats", "store"],
)
async def test_an_unreachable_broker_is_exit_1_and_one_line(args: list[str], message: str) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    code, lines = await _finish(_serve(*(a.format(port=port) for a in args)), within=15)
    assert code == 1
    assert time.monotonic() - started < STARTUP_TIMEOUT + 5  # refused: at once; NATS retries until the deadline
    assert len(lines) == 1 and lines[0].startswith("hubbub: " + message.format(port=port)), lines
    assert "hunter2" not in lines[0]


@pytest.mark.parametrize("broker", ["redis", "nats"])
async def test_a_broker_that_never_answers_is_given_up_after_the_startup_timeout(
    silent: tuple[Silent, int], broker: str
) -> None:
    _, port = silent
    args = ["--broker", f"redis://127.0.0.1:{port}/0"]
    if broker == "nats":
        args = ["--broker", f"nats://127.0.0.1:{port}", "--store", REDIS]
    started = time.monotonic()
    code, lines = await _finish(_serve(*args), within=15)
    elapsed = time.monotonic() - started
    assert code == 1 and STARTUP_TIMEOUT <= elapsed < STARTUP_TIMEOUT + 4
    assert len(lines) == 1 and f"no answer within {STARTUP_TIMEOUT:g} s" in lines[0], lines


@pytest.mark.parametrize(("sig", "broker"), [(signal.SIGTERM, "redis"), (signal.SIGINT, "nats")])
async def test_a_signal_during_a_hanging_start_up_exits_at_once(
    silent: tuple[Silent, int], sig: signal.Signals, broker: str
) -> None:
    peer, port = silent
    args = ["--broker", f"redis://127.0.0.1:{port}/0"]
    if broker == "nats":
        args = ["--broker", f"nats://127.0.0.1:{port}", "--store", REDIS]
    proc = _serve(*args)
    try:
        await asyncio.wait_for(peer.connected.wait(), 10)  # it is waiting for the broker now
        started = time.monotonic()
        proc.send_signal(sig)
        code, lines = await _finish(proc, within=5)
    finally:
        proc.kill()
    # About 0.1 s. (It was 5 s one time in three: redis-py absorbs a cancellation during its
    # handshake until its socket timeout; `redis_pool.abandon` cancels again until it ends.)
    assert code == 0 and time.monotonic() - started < 2
    assert not any("Traceback" in line for line in lines), lines


@pytest.mark.parametrize(
    ("broker", "missing", "extras"),
    [("redis://127.0.0.1:6379/0", "redis", "redis"), ("nats://127.0.0.1:4222", "nats", "nats,redis")],
)
async def test_a_backend_without_its_extra_says_what_to_install(
    tmp_path: Path, broker: str, missing: str, extras: str
) -> None:
    """As if `pip install hubbub` had been run without the extra: the library cannot be imported."""
    package = tmp_path / missing
    package.mkdir()
    fake = f"raise ModuleNotFoundError(\"No module named '{missing}'\", name={missing!r})\n"
    (package / "__init__.py").write_text(fake)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    args = ["--broker", broker] + (["--store", REDIS] if missing == "nats" else [])
    code, lines = await _finish(_serve(*args, env={"PYTHONPATH": path}), within=10)
    assert code == 2
    assert len(lines) == 1 and f"pip install 'hubbub[{extras}]'" in lines[0], lines
    assert lines[0].endswith(f"(from a clone: pip install '.[{extras}]')"), lines


def _without_argon2(tmp_path: Path) -> dict[str, str]:
    """An environment as if `pip install hubbub` had been run without the `auth` extra."""
    package = tmp_path / "argon2"
    package.mkdir()
    (package / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'argon2'\", name='argon2')\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


async def test_a_missing_users_file_is_told_before_the_missing_extra(tmp_path: Path) -> None:
    """A newcomer's `--users /nonexistent` without argon2-cffi hears of the file first, and of both."""
    env = _without_argon2(tmp_path)
    code, lines = await _finish(_serve("--users", str(tmp_path / "nonexistent"), env=env), within=10)
    assert code == 2 and len(lines) == 1, lines
    said = lines[0]
    assert said.startswith("hubbub serve: --users: cannot read ") and "No such file" in said, said
    assert said.index("No such file") < said.index("argon2-cffi") and "pip install '.[auth]'" in said, said
    users = tmp_path / "users"
    users.write_text("ada:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
    code, lines = await _finish(_serve("--users", str(users), env=env), within=10)
    assert code == 2 and len(lines) == 1 and "needs argon2-cffi" in lines[0], lines
