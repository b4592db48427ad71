"""`Roster` with a real memory broker and presence: what is published, and when."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from hubbub.backends.memory import MemoryBroker, MemoryPresence
from hubbub.core.connection import Connection
from hubbub.core.membership import Roster
from hubbub.core.tasks import TaskOwner

INTERVAL = 0.1


@dataclass
class FakeConn:
    id: int
    identity: str
    info: bytes | None = None
    since: float = 0.0


@dataclass
class Setup:
    roster: Roster
    heard: list[dict[str, Any]]
    tasks: TaskOwner
    broker: MemoryBroker


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    broker = MemoryBroker(history_size=0)
    heard: list[dict[str, Any]] = []
    await broker.start(lambda room, offset, event: heard.append(json.loads(event)))
    await broker.subscribe("r")
    tasks = TaskOwner("test")
    roster = Roster(MemoryPresence(), broker, "n", tasks, True, INTERVAL, max_members=0)
    yield Setup(roster, heard, tasks, broker)
    await tasks.close()
    await broker.close()


def conn(n: int, name: str) -> Connection:
    return cast(Connection, FakeConn(n, name))


async def test_changes_wait_for_the_flush_then_come_in_order(setup: Setup) -> None:
    await setup.roster.change("r", conn(1, "ada"), joined=True)
    await setup.roster.change("r", conn(2, "bo"), joined=True)
    assert setup.heard == []  # not at once
    await asyncio.sleep(INTERVAL * 1.5)
    assert [(e["type"], e["payload"]["name"]) for e in setup.heard] == [
        ("member_joined", "ada"),
        ("member_joined", "bo"),
    ]


async def test_a_second_connection_changes_nothing_and_a_reload_announces_nothing(setup: Setup) -> None:
    ada, phone = conn(1, "ada"), conn(2, "ada")
    await setup.roster.change("r", ada, joined=True)
    await asyncio.sleep(INTERVAL * 1.5)
    setup.heard.clear()
    await setup.roster.change("r", phone, joined=True)  # her second connection: no transition
    await setup.roster.change("r", ada, joined=False)
    await setup.roster.change("r", phone, joined=False)  # her last: she left...
    await setup.roster.change("r", ada, joined=True)  # ... and is back before the flush
    await asyncio.sleep(INTERVAL * 1.5)
    assert setup.heard == []


async def test_close_publishes_what_is_still_gathered(setup: Setup) -> None:
    await setup.roster.change("r", conn(1, "ada"), joined=True)
    await setup.roster.close()
    assert [e["type"] for e in setup.heard] == ["member_joined"]
    await asyncio.sleep(INTERVAL * 1.5)
    assert len(setup.heard) == 1  # no flush after the close


async def test_an_expired_name_is_announced_at_the_flush(setup: Setup) -> None:
    setup.roster.expired("r", "ghost")
    assert setup.heard == []
    await asyncio.sleep(INTERVAL * 1.5)
    assert setup.heard == [{"type": "member_left", "payload": {"room": "r", "name": "ghost"}}]


async def test_an_interval_of_zero_announces_at_once(setup: Setup) -> None:
    roster = Roster(MemoryPresence(), setup.broker, "n", setup.tasks, True, 0.0)
    await roster.change("r", conn(1, "ada"), joined=True)
    assert [e["type"] for e in setup.heard] == ["member_joined"]
