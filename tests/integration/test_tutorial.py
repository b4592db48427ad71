"""examples/tutorial.py, the Go tutorial's dialect, under `hubbub serve --app` with TLS and logins.

The server is the real command, run from the repository root as docs/tutorial.md says;
a websockets client speaks the dialect over wss:// with a ticket from `POST /login`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.auth.passwords import hash_password
from tests.cluster import free_port
from tests.helpers import EventClient
from tests.integration.test_tls import tls_files as tls_files  # the module's self-signed certificate

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"ada": "correct horse", "bob": "hunter2"}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users"
    path.write_text("".join(f"{name}:{hash_password(pw)}\n" for name, pw in PASSWORDS.items()))
    return path


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


@pytest.fixture
def tutorial_server(tls_files: tuple[Path, Path], users_file: Path, tmp_path: Path) -> Iterator[int]:
    """`hubbub serve --app examples.tutorial:hub ...` from the repository root; its port."""
    port = free_port()
    command = [sys.executable, "-m", "hubbub", "serve", "--port", str(port)]
    command += ["--app", "examples.tutorial:hub", "--static", "examples/tutorial_static"]
    command += ["--tls-cert", str(tls_files[0]), "--tls-key", str(tls_files[1]), "--users", str(users_file)]
    source = str(ROOT / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def trusting(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


async def login(port: int, context: ssl.SSLContext, name: str) -> str:
    """`POST /login` as the tutorial's page does (JSON in a text/plain body); the `otp`."""
    body = json.dumps({"username": name, "password": PASSWORDS[name]}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    head = f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
    writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    status_line, _, answer = data.partition(b"\r\n\r\n")
    assert status_line.split()[1] == b"200", data
    otp: str = json.loads(answer)["otp"]
    return otp


async def open_client(port: int, context: ssl.SSLContext, name: str) -> EventClient:
    """Log in, connect, and wait until the connection is in `general`.

    `on_connect` joins it while the handshake is already done: the client's own
    messages wait for the hook, but other clients' do not, so until this
    client's first message comes back it may miss theirs.
    """
    otp = await login(port, context, name)
    client = await EventClient.open(f"wss://127.0.0.1:{port}/ws?otp={otp}", ssl=context)
    await client.send("send_message", {"message": f"{name} is here", "from": name})
    got = await client.recv()
    assert got["type"] == "new_message" and got["payload"]["room"] == "general", got
    return client


async def nothing_more(client: EventClient) -> None:
    try:
        event: dict[str, Any] = await client.recv(timeout=0.3)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected event {event}")


async def test_the_dialect_over_wss_with_logins(tutorial_server: int, tls_files: tuple[Path, Path]) -> None:
    context = trusting(tls_files)
    ada = await open_client(tutorial_server, context, "ada")
    bob = await open_client(tutorial_server, context, "bob")
    try:
        assert (await ada.recv())["payload"]["message"] == "bob is here"
        # both start in general: a message without room or id reaches both, sender included, and no ack
        await ada.send("send_message", {"message": "hello", "from": "someone else"})
        for client in (ada, bob):
            got = await client.recv()
            assert got["type"] == "new_message", got
            payload = got["payload"]
            assert payload["message"] == "hello" and payload["from"] == "ada" and payload["room"] == "general"
            assert payload["sent"].endswith("Z") and "T" in payload["sent"]
        await nothing_more(ada)
        # change_room: bob leaves general, so ada's next message is not his
        await bob.send("change_room", {"name": "quiet"})
        await nothing_more(bob)  # no ack, no presence event
        await ada.send("send_message", {"message": "anyone?", "from": "ada"})
        assert (await ada.recv())["payload"]["message"] == "anyone?"
        await bob.send("send_message", {"message": "alone here", "from": "bob"})
        got = await bob.recv()
        assert got["type"] == "new_message" and got["payload"]["message"] == "alone here"
        assert got["payload"]["room"] == "quiet" and got["payload"]["from"] == "bob"
        await nothing_more(ada)
        await nothing_more(bob)
        # and back to general
        await bob.send("change_room", {"name": "general"})
        await nothing_more(bob)
        await ada.send("send_message", {"message": "welcome back", "from": "ada"})
        assert (await bob.recv())["payload"]["message"] == "welcome back"
    finally:
        await ada.close()
        await bob.close()


async def test_bad_payloads_are_errors_not_silence(tutorial_server: int, tls_files: tuple[Path, Path]) -> None:
    """Not normal use: a bad room name or a message that is not a string is answered `bad_payload`."""
    context = trusting(tls_files)
    ada = await open_client(tutorial_server, context, "ada")
    try:
        await ada.send("change_room", {"name": "bad room!"})
        got = await ada.recv()
        assert got["type"] == "error" and got["payload"]["code"] == "bad_payload", got
        await ada.send("send_message", {"message": {"not": "a string"}, "from": "ada"})
        got = await ada.recv()
        assert got["type"] == "error" and got["payload"]["code"] == "bad_payload", got
        # still in general after the refused change
        await ada.send("send_message", {"message": "still here", "from": "ada"})
        got = await ada.recv()
        assert got["payload"]["room"] == "general" and got["payload"]["message"] == "still here"
    finally:
        await ada.close()


async def test_the_page_is_served(tutorial_server: int, tls_files: tuple[Path, Path]) -> None:
    context = trusting(tls_files)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tutorial_server, ssl=context, server_hostname="localhost"
    )
    writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{tutorial_server}\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and b'fetch("/login"' in data
