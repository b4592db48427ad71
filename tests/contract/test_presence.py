"""The Presence contract, against every backend (two nodes sharing one store)."""

from __future__ import annotations

import asyncio

from hubbub.backends.presence import Change, Presence
from hubbub.backends.redis_presence import RedisPresence
from tests.helpers import eventually

Pair = tuple[Presence, Presence, list[tuple[str, str, bool]]]


async def test_first_and_last_connection_of_a_name(presence_pair: Pair) -> None:
    a, b, _ = presence_pair
    assert await a.add("r", "alice", "a:1") == Change.ROOM  # the room's first name
    assert await b.add("r", "alice", "b:7") == Change.NONE  # her second connection, on another node
    assert await a.add("r", "bob", "a:2") == Change.MEMBER
    assert await a.members("r") == [("alice", 2), ("bob", 1)]
    assert await b.members("r") == [("alice", 2), ("bob", 1)]
    assert await a.remove("r", "alice", "a:1") == Change.NONE
    assert await b.remove("r", "alice", "b:7") == Change.MEMBER  # her last; bob is still there
    assert await b.remove("r", "alice", "b:7") == Change.NONE  # already gone
    assert await a.members("r") == [("bob", 1)]
    assert await a.members("nowhere") == []


async def test_a_room_is_occupied_and_vacated_once(presence_pair: Pair) -> None:
    """The room's first and last name are decided by the store: one `ROOM` each way, whichever node asks."""
    a, b, _ = presence_pair
    assert await b.add("hall", "carol", "b:1") == Change.ROOM
    assert await a.add("hall", "dave", "a:1") == Change.MEMBER
    assert await a.add("hall", "carol", "a:2") == Change.NONE
    assert await b.remove("hall", "carol", "b:1") == Change.NONE
    assert await a.remove("hall", "carol", "a:2") == Change.MEMBER
    assert await b.remove("hall", "dave", "a:1") == Change.ROOM  # the last name, removed by another node
    assert await a.members("hall") == []
    assert await a.add("hall", "dave", "a:3") == Change.ROOM  # occupied again
    assert not Change.NONE and Change.MEMBER and Change.ROOM  # `if change:` asks "joined or left?"


async def test_a_dead_nodes_entries_expire(presence_pair: Pair, backend: str) -> None:
    a, b, expired = presence_pair
    if backend == "memory":
        return  # one node: nothing can die without the process that would notice
    await b.add("room", "ghost", "b:1")
    await a.add("room", "alive", "a:1")
    await b.add("lonely", "ghost", "b:3")
    await b.add("crypt", "ghost", "b:5")
    await b.close()  # removes b's entries like a clean shutdown; simulate a crash instead below
    await b.start(lambda room, name, vacated: expired.append((room, name, vacated)))
    await b.add("room", "ghost", "b:2")
    assert await b.add("lonely", "ghost", "b:4") == Change.ROOM
    assert await b.add("crypt", "ghost", "b:6") == Change.ROOM
    assert await b.add("crypt", "wraith", "b:7") == Change.MEMBER
    assert isinstance(b, RedisPresence) and b._task is not None
    b._task.cancel()  # b stops refreshing: it has died without a word
    await eventually(lambda: len(expired) >= 4, timeout=4)
    assert sorted(expired)[2:] == [("lonely", "ghost", True), ("room", "ghost", False)]  # alive is still in room
    crypt = sorted(expired)[:2]  # two names expire at once: both leave, the room is vacated once
    assert [name for _, name, _ in crypt] == ["ghost", "wraith"] and sum(v for _, _, v in crypt) == 1
    assert await a.members("room") == [("alive", 1)]
    assert await a.members("lonely") == [] and await a.members("crypt") == []


async def test_rooms_with_members_cluster_wide(
    presence_pair: Pair,
) -> None:
    a, b, _ = presence_pair
    assert await a.rooms() == []
    await a.add("r2", "alice", "a:1")
    await b.add("r2", "alice", "b:1")  # the same identity twice: one member
    await b.add("r2", "bob", "b:2")
    await a.add("r1", "carol", "a:3")
    assert await a.rooms() == [("r1", 1), ("r2", 2)]
    assert await b.rooms() == [("r1", 1), ("r2", 2)]
    await a.remove("r1", "carol", "a:3")
    assert await b.rooms() == [("r2", 2)]


async def test_rooms_can_be_listed_up_to_a_limit(presence_pair: Pair) -> None:
    """`GET /api/rooms` asks for at most `MAX_ROOMS_LISTED` + 1: clients make rooms, the answer is bounded."""
    a, b, _ = presence_pair
    for n in range(1200):
        await a.add(f"room-{n:04}", "alice", "a:1")
    await b.add("room-0000", "bob", "b:1")
    for backend in (a, b):
        some = await backend.rooms(limit=1000)
        assert len(some) == 1000 and some == sorted(some)
        assert all(members == (2 if room == "room-0000" else 1) for room, members in some)
        assert len(await backend.rooms(limit=5000)) == 1200


async def test_node_reports_expire(presence_pair: Pair) -> None:
    a, b, _ = presence_pair
    await a.report_node("node-a", 3, 2, 0.5)
    await b.report_node("node-b", 1, 1, 30.0)
    expected = [("node-a", 3, 2), ("node-b", 1, 1)]
    assert await a.nodes() == expected
    assert await b.nodes() == expected
    await a.report_node("node-a", 4, 2, 0.5)  # a new report replaces the last
    assert (await b.nodes())[0] == ("node-a", 4, 2)
    await asyncio.sleep(0.7)
    assert await a.nodes() == [("node-b", 1, 1)]  # node-a stopped reporting: it is gone


async def test_info_travels_with_a_name_until_its_last_connection_leaves(
    presence_pair: Pair,
) -> None:
    a, b, _ = presence_pair
    assert await a.infos("r") == {}
    assert await a.add("r", "alice", "a:1", b'{"role":"admin"}') == Change.ROOM
    assert await a.add("r", "bob", "a:2") == Change.MEMBER  # no info: none listed
    assert await b.infos("r") == {"alice": b'{"role":"admin"}'}
    assert await b.add("r", "alice", "b:1", b'{"role":"owner"}') == Change.NONE  # the latest connection's info
    assert await a.infos("r") == {"alice": b'{"role":"owner"}'}
    assert await a.members("r") == [("alice", 2), ("bob", 1)]  # members are unchanged by info
    assert await a.remove("r", "alice", "a:1") == Change.NONE
    assert await a.infos("r") == {"alice": b'{"role":"owner"}'}  # she is still there
    assert await b.remove("r", "alice", "b:1") == Change.MEMBER
    assert await a.infos("r") == {}
    assert await a.infos("elsewhere") == {}


async def test_node_stats_expire(presence_pair: Pair) -> None:
    """The admin dashboard's records: each node's latest, gone `ttl` after it stopped."""
    a, b, _ = presence_pair
    await a.report_stats("node-a", b'{"n":1}', 0.5)
    await b.report_stats("node-b", b'{"n":2}', 30.0)
    await a.report_stats("node-a", b'{"n":3}', 0.5)
    assert await b.node_stats() == {"node-a": b'{"n":3}', "node-b": b'{"n":2}'}
    await asyncio.sleep(0.7)
    assert await a.node_stats() == {"node-b": b'{"n":2}'}


async def test_entries_say_which_connection_and_node(presence_pair: Pair) -> None:
    a, b, _ = presence_pair
    await a.add("r", "alice", "node-a:1")
    await b.add("r", "alice", "node-b:7")
    await b.add("r", "bob", "node-b:8")
    expected = [("alice", "node-a:1"), ("alice", "node-b:7"), ("bob", "node-b:8")]
    assert await a.entries("r", 10) == expected
    assert await b.entries("r", 2) == expected[:2]
    assert await a.entries("nowhere", 10) == []
