"""The Presence contract, against every backend (two nodes sharing one store)."""

from __future__ import annotations

import asyncio

from hubbub.backends.redis_presence import RedisPresence
from hubbub.presence import Presence
from tests.helpers import eventually


async def test_first_and_last_connection_of_a_name(
    presence_pair: tuple[Presence, Presence, list[tuple[str, str]]],
) -> None:
    a, b, _ = presence_pair
    assert await a.add("r", "alice", "a:1") is True
    assert await b.add("r", "alice", "b:7") is False  # her second connection, on another node
    assert await a.add("r", "bob", "a:2") is True
    assert await a.members("r") == [("alice", 2), ("bob", 1)]
    assert await b.members("r") == [("alice", 2), ("bob", 1)]
    assert await a.remove("r", "alice", "a:1") is False
    assert await b.remove("r", "alice", "b:7") is True
    assert await b.remove("r", "alice", "b:7") is False  # already gone
    assert await a.members("r") == [("bob", 1)]
    assert await a.members("nowhere") == []


async def test_a_dead_nodes_entries_expire(
    presence_pair: tuple[Presence, Presence, list[tuple[str, str]]], backend: str
) -> None:
    a, b, expired = presence_pair
    if backend == "memory":
        return  # one node: nothing can die without the process that would notice
    await b.add("room", "ghost", "b:1")
    await a.add("room", "alive", "a:1")
    await b.close()  # removes b's entries like a clean shutdown; simulate a crash instead below
    await b.start(lambda room, name: expired.append((room, name)))
    await b.add("room", "ghost", "b:2")
    assert isinstance(b, RedisPresence) and b._task is not None
    b._task.cancel()  # b stops refreshing: it has died without a word
    await eventually(lambda: ("room", "ghost") in expired, timeout=4)
    assert await a.members("room") == [("alive", 1)]


async def test_rooms_with_members_cluster_wide(
    presence_pair: tuple[Presence, Presence, list[tuple[str, str]]],
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


async def test_node_reports_expire(presence_pair: tuple[Presence, Presence, list[tuple[str, str]]]) -> None:
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
