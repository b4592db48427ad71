"""`Presence.count`, against every backend: the number of names in a room, cluster-wide."""

from __future__ import annotations

from hubbub.backends.presence import Presence

Pair = tuple[Presence, Presence, list[tuple[str, str, bool]]]


async def test_count_is_the_number_of_names_on_every_node(presence_pair: Pair) -> None:
    a, b, _ = presence_pair
    assert await a.count("r") == 0
    await a.add("r", "alice", "a:1")
    await b.add("r", "alice", "b:1")  # her second connection: still one name
    await b.add("r", "bob", "b:2")
    assert await a.count("r") == 2 and await b.count("r") == 2
    assert await a.count("r") == len(await a.members("r"))
    await a.remove("r", "alice", "a:1")
    await b.remove("r", "alice", "b:1")
    assert await b.count("r") == 1
    assert await a.count("elsewhere") == 0
