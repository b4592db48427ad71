"""hubbub.client and `hubbub chat` against a real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from hubbub.client import Client, RequestFailed, connect
from hubbub.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url


async def test_client_api(server: Server) -> None:
    async with connect(ws_url(server), name="ada") as ada:
        ack = await ada.join("lab")
        assert ack == {"room": "lab", "offset": 0}
        assert await ada.send("lab", "first") == 1
        assert await ada.send("lab", {"structured": True}) == 2
        events = [await ada.next_event(timeout=5) for _ in range(3)]
        assert [e["type"] for e in events] == ["member_joined", "new_message", "new_message"]
        assert events[2]["payload"]["message"] == {"structured": True}
        history = await ada.history("lab", since=1)
        assert [m["message"] for m in history["messages"]] == [{"structured": True}]
        assert await ada.presence("lab") == [{"name": "ada", "connections": 1}]
        with pytest.raises(RequestFailed) as failed:
            await ada.send("elsewhere", "x")
        assert failed.value.code == "not_in_room"


async def test_client_resumes_after_a_drop_without_gaps_or_repeats(server: Server) -> None:
    writer = await EventClient.open(ws_url(server))
    await writer.join("r")
    async with connect(ws_url(server), name="bo", backoff=0.05, max_backoff=0.2) as bo:
        await bo.join("r")
        await writer.request("send_message", {"room": "r", "message": 0})
        for conn in list(server.hub.connections):
            if conn.identity == "bo":
                conn.abort()  # the network drops bo's connection
        for k in range(1, 6):  # published in process while bo is away
            await server.hub.publish("r", k, "writer")
        got: list[int] = []
        while len(got) < 8:
            event = await bo.next_event(timeout=5)
            if event["type"] == "new_message":
                got.append(event["payload"]["message"])
                if len(got) == 6:
                    await writer.request("send_message", {"room": "r", "message": 6})
                    await writer.request("send_message", {"room": "r", "message": 7})
        assert got == list(range(8))
        assert bo.reconnects == 1
    await writer.close()


async def test_client_reports_a_room_it_could_not_recover(make_server: ServerFactory) -> None:
    server = await make_server(history_size=3)
    writer = await EventClient.open(ws_url(server))
    await writer.join("r")
    async with connect(ws_url(server), name="cy", backoff=0.05, max_backoff=0.2) as cy:
        await cy.join("r")
        for conn in list(server.hub.connections):
            if conn.identity == "cy":
                conn.abort()
        for k in range(10):  # in process: all published before cy can be back
            await server.hub.publish("r", k, "writer")
        while (event := await cy.next_event(timeout=5))["type"] != "room_reset":
            pass
        assert event["payload"] == {"room": "r", "offset": 10}
    await writer.close()


async def test_client_refused_by_the_server_is_told(server: Server) -> None:
    client = Client(ws_url(server), name="n" * 100)
    with pytest.raises(ConnectionRefusedError, match="HTTP 400"):
        await client.start()


async def test_terminal_chat(server: Server) -> None:
    watcher = await EventClient.open(ws_url(server, query="name=watcher"))
    await watcher.join("tty")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "chat",
        ws_url(server),
        "--room",
        "tty",
        "--name",
        "term",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    await eventually(lambda: any(c.identity == "term" and c.rooms for c in server.hub.connections), timeout=10)
    await watcher.request("send_message", {"room": "tty", "message": "hello terminal"})
    proc.stdin.write(b"hello room\n/who\n")
    await proc.stdin.drain()
    said = await watcher.recv_type("new_message")
    while said["payload"]["from"] != "term":
        said = await watcher.recv_type("new_message")
    assert said["payload"]["message"] == "hello room"
    await asyncio.sleep(0.5)
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "#tty watcher: hello terminal" in text
    assert "#tty term: hello room" in text
    assert "* in #tty: term (1), watcher (1)" in text
    await watcher.close()
