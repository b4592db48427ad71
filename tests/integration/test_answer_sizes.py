"""Answers a client can ask for are bounded in bytes, so that asking never gets the asker dropped."""

from __future__ import annotations

from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url


async def test_a_long_member_list_is_cut_and_marked_truncated(make_server: ServerFactory) -> None:
    server: Server = await make_server(max_message_size=1024, send_queue_bytes=4096)
    client = await EventClient.open(ws_url(server))
    await client.join("crowd")
    for i in range(200):  # as if 200 people with long names were in the room, on any node
        await server.hub.presence.add("crowd", f"{i:03d}" + "n" * 60, f"elsewhere:{i}")
    reply = await client.request("get_presence", {"room": "crowd"})
    assert reply["type"] == "ack" and reply["payload"]["truncated"] is True
    members = reply["payload"]["members"]
    assert 0 < len(members) < 200
    assert [m["name"] for m in members] == sorted(m["name"] for m in members)  # the first names, in order
    assert (await client.request("get_presence", {"room": "crowd"}))["type"] == "ack"  # still connected
    await client.close()


async def test_a_short_member_list_is_whole(make_server: ServerFactory) -> None:
    server: Server = await make_server()
    client = await EventClient.open(ws_url(server, query="name=ada"))
    await client.join("small")
    reply = await client.request("get_presence", {"room": "small"})
    assert reply["payload"] == {"room": "small", "members": [{"name": "ada", "connections": 1}]}
    await client.close()
