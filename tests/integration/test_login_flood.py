"""A login flood against one user, on real sockets with real argon2 hashes: it stops costing password
checks, another user logs in meanwhile, and a WebSocket client in the same server keeps its answers."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hubbub.auth.logins import LOGIN_BURST, LOGIN_RATE_PER_MIN, NAME_GRACE
from hubbub.auth.passwords import hash_password
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

PASSWORDS = {"ada": "correct horse", "bob": "hunter2"}


@pytest.fixture(scope="module")
def users_text() -> str:
    return "".join(f"{name}:{hash_password(pw)}\n" for name, pw in PASSWORDS.items())


async def post_login(port: int, source: str, name: str, password: str) -> tuple[int, dict[str, str], bytes]:
    """`POST /login` from the loopback address `source`: status, headers (lowercased names), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    body = json.dumps({"username": name, "password": password}).encode()
    writer.write(
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n\r\n%b" % (port, len(body), body)
    )
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, answer = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, answer


async def test_a_flood_against_one_user_costs_few_checks_and_denies_no_one_else(
    make_server: ServerFactory, tmp_path: Path, users_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_file = tmp_path / "users"
    users_file.write_text(users_text)
    server = await make_server(users_file=str(users_file), allow_anonymous=True)
    assert server.auth is not None
    checked: list[str] = []
    verify: Callable[[str, str], bool] = server.auth.users.verify

    def counted(name: str, password: str) -> bool:
        checked.append(name)
        return verify(name, password)

    monkeypatch.setattr(server.auth.users, "verify", counted)
    bystander = await EventClient.open(ws_url(server, query="name=carol"))
    await bystander.join("elsewhere")
    latencies: list[float] = []
    flooding = asyncio.Event()

    async def chat() -> None:
        for n in range(10**6):
            started = time.monotonic()
            reply = await bystander.request("send_message", {"room": "elsewhere", "message": f"m{n}"})
            assert reply["type"] == "ack", reply
            latencies.append(time.monotonic() - started)
            if not flooding.is_set():
                return
            await asyncio.sleep(0.1)  # under the rate limit

    async with asyncio.timeout(60):
        flooding.set()
        chatting = asyncio.create_task(chat())
        # 40 wrong passwords for ada at once, from addresses of their own; bob logs in beside them
        flood = [post_login(server.port, f"127.0.5.{1 + n}", "ada", "guess") for n in range(40)]
        answers = await asyncio.gather(*flood, post_login(server.port, "127.0.6.1", "bob", PASSWORDS["bob"]))
        flooding.clear()
        await chatting
    *wrong, (bob_status, _, bob_body) = answers
    assert bob_status == 200 and "ticket" in json.loads(bob_body)
    assert checked.count("ada") <= NAME_GRACE  # the other 30 were refused unchecked
    statuses = [status for status, _, _ in wrong]
    # 401 for each check; 429 for the rest (503 for those that waited too long for a check, on a
    # machine slow enough that ten argon2 checks take seconds)
    assert set(statuses) <= {401, 429, 503} and statuses.count(401) == checked.count("ada")
    assert statuses.count(429) >= 40 - NAME_GRACE
    assert all(int(headers["retry-after"]) >= 1 for status, headers, _ in wrong if status != 401)
    assert all("retry-after" not in headers for status, headers, _ in wrong if status == 401)
    # the WebSocket client kept its answers (its latency under load is measured by benchmarks/attacks.py)
    assert len(latencies) >= 2 and statistics.median(latencies) < 0.25
    await bystander.close()


async def test_an_address_out_of_attempts_is_told_when_to_come_back(make_server: ServerFactory, tmp_path: Path) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    users_file = tmp_path / "users"
    users_file.write_text(f"ada:{cheap.hash('right')}\n")
    server = await make_server(users_file=str(users_file))
    async with asyncio.timeout(30):
        # a spray over names from one address: the address's attempts run out, whatever the names
        answers = [await post_login(server.port, "127.0.7.1", f"user{n}", "guess") for n in range(LOGIN_BURST + 1)]
    assert [status for status, _, _ in answers] == [401] * LOGIN_BURST + [429]
    wait = int(answers[-1][1]["retry-after"])
    assert 1 <= wait <= 60 / LOGIN_RATE_PER_MIN + 1
