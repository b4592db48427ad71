"""The Presence contract, against every backend (two nodes sharing one store)."""

from __future__ import annotations

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


async def test_info_travels_with_a_name_until_its_last_connection_leaves(
    presence_pair: tuple[Presence, Presence, list[tuple[str, str]]],
) -> None:
    a, b, _ = presence_pair
    assert await a.infos("r") == {}
    assert await a.add("r", "alice", "a:1", b'{"role":"admin"}') is True
    assert await a.add("r", "bob", "a:2") is True  # no info: none listed
    assert await b.infos("r") == {"alice": b'{"role":"admin"}'}
    assert await b.add("r", "alice", "b:1", b'{"role":"owner"}') is False  # the latest connection's info
    assert await a.infos("r") == {"alice": b'{"role":"owner"}'}
    assert await a.members("r") == [("alice", 2), ("bob", 1)]  # members are unchanged by info
    assert await a.remove("r", "alice", "a:1") is False
    assert await a.infos("r") == {"alice": b'{"role":"owner"}'}  # she is still there
    assert await b.remove("r", "alice", "b:1") is True
    assert await a.infos("r") == {}
    assert await a.infos("elsewhere") == {}
