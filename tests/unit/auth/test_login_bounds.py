"""The bounds on password checks: per user name (with backoff), in total (a budget a second), and
the threads that run them; limiters with fake time, checks with a counting stand-in for argon2."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from functools import partial

import pytest
from argon2 import PasswordHasher, extract_parameters

from hubbub.auth.logins import (
    LOWERS_PRIORITY,
    NAME_GRACE,
    AttemptLimiter,
    Authenticator,
    CheckBudget,
    CheckQueue,
    KnownAddresses,
    LoginBounds,
    NameBackoff,
    Outcome,
    Refusal,
)
from hubbub.auth.passwords import PARALLELISM, Users, hash_password
from hubbub.backends.tickets import MemoryTickets

CHEAP = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
"""Hashes that cost a millisecond: these tests count checks, they do not time argon2."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_users(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> tuple[Users, list[str]]:
    """Users whose every check is recorded (by name) before it is made."""
    users = Users({name: CHEAP.hash(password) for name, password in names.items()})
    checked: list[str] = []
    verify = users.verify

    def counted(name: str, password: str) -> bool:
        checked.append(name)
        return verify(name, password)

    monkeypatch.setattr(users, "verify", counted)
    return users, checked


# ---- per user name ---------------------------------------------------------------------


def test_a_names_failures_double_its_wait_after_the_grace_up_to_the_cap() -> None:
    clock = Clock()
    names = NameBackoff(grace=3, base=1.0, cap=8.0, clock=clock)
    for _ in range(2):
        names.charge("ada")
        assert names.wait("ada") == 0.0  # typos: no wait
    waits = []
    for _ in range(6):
        names.charge("ada")
        waits.append(names.wait("ada"))
        clock.now += waits[-1]
        assert names.wait("ada") == 0.0
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert names.wait("bob") == 0.0  # another name is not affected
    names.charge("ada")
    clock.now += 3.0
    assert names.wait("ada") == 5.0
    names.succeeded("ada")  # a success forgets the failures
    assert names.wait("ada") == 0.0 and len(names) == 0


def test_a_refunded_attempt_and_a_forgotten_name_start_afresh() -> None:
    clock = Clock()
    names = NameBackoff(grace=1, base=2.0, cap=60.0, memory=100.0, clock=clock)
    assert names.charge("ada") == 0
    assert names.wait("ada") == 2.0
    names.refund("ada")  # never checked (the queue was full): not a failure
    assert names.wait("ada") == 0.0 and len(names) == 0
    for _ in range(5):
        names.charge("ada")
    assert names.wait("ada") == 32.0
    clock.now += 101.0
    assert names.wait("ada") == 0.0 and names.charge("ada") == 0


def test_an_attempt_given_back_leaves_the_wait_as_it_was() -> None:
    clock = Clock()
    names = NameBackoff(grace=1, base=2.0, clock=clock)
    names.charge("ada")
    clock.now += 2.0
    assert names.wait("ada") == 0.0
    names.charge("ada")  # let through, then never checked (or it came from a known address, and was right)
    assert names.wait("ada") == 4.0
    names.refund("ada")
    assert names.wait("ada") == 0.0


def test_the_names_remembered_are_bounded_and_cost_the_same_whatever_their_length() -> None:
    names = NameBackoff(grace=1, max_names=100, clock=Clock())
    for n in range(10_000):
        names.charge(f"user-{n}" + "x" * (n % 1000))
    assert len(names) == 100
    assert names.wait("user-9999" + "x" * 999) > 0 and names.wait("user-0") == 0.0
    assert all(len(key) == 16 for key in names._names)
    names.charge("\ud800 a lone surrogate")  # JSON can carry one; it is a name like any other
    assert len(names) == 100


def test_a_name_under_attack_stays_remembered_while_it_is_tried() -> None:
    names = NameBackoff(grace=1, max_names=100, clock=Clock())
    for n in range(1000):
        names.charge(f"spray-{n}")
        if n % 50 == 0:
            names.charge("ada")
    assert names.wait("ada") > 0


def test_the_known_addresses_are_few_per_user_and_bounded_in_users() -> None:
    known = KnownAddresses(per_name=2, max_names=3)
    for address in ("a", "b", "c"):
        known.add("ada", address)
    assert known.knows("ada", "c") and known.knows("ada", "b") and not known.knows("ada", "a")
    assert not known.knows("bob", "c")
    for name in ("bob", "carol", "dave"):
        known.add(name, "x")
    assert len(known) == 3 and not known.knows("ada", "c") and known.knows("dave", "x")


# ---- the budget and the address limiter ------------------------------------------------


def test_the_budget_refills_at_its_rate_and_says_when() -> None:
    clock = Clock()
    budget = CheckBudget(rate=4.0, burst=2, clock=clock)
    assert budget.take() == 0.0 and budget.take() == 0.0
    assert budget.take() == 0.25
    clock.now += 0.25
    assert budget.take() == 0.0
    clock.now += 10.0
    assert [budget.take() for _ in range(3)] == [0.0, 0.0, 0.25]


def test_an_address_says_what_it_spent_and_when_it_may_try_again() -> None:
    clock = Clock()
    limiter = AttemptLimiter(burst=2, rate_per_min=6.0, clock=clock)
    assert limiter.spent("1.2.3.4") == 0 and limiter.wait("1.2.3.4") == 0.0
    limiter.charge("1.2.3.4")
    limiter.charge("1.2.3.4")
    assert limiter.spent("1.2.3.4") == 2 and limiter.wait("1.2.3.4") == 10.0
    clock.now += 4.0
    assert limiter.wait("1.2.3.4") == pytest.approx(6.0)


# ---- logins: what a flood and a spray still cost ------------------------------------------


async def test_a_flood_against_one_name_stops_costing_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    users, checked = counting_users(monkeypatch, {"ada": "right", "bob": "hunter2"})
    clock = Clock()
    auth = Authenticator(users, MemoryTickets(5.0), 5.0, LoginBounds(check_burst=1000), clock)  # time stands
    outcomes: dict[str, list[Refusal | str]] = {}
    for name in ("ada", "mallory"):  # an existing name and one that is not: told apart by nothing
        results = await asyncio.gather(*(auth.login(f"10.0.{n // 4}.{n}", name, "guess") for n in range(40)))
        outcomes[name] = list(results)
    assert Counter(checked) == {"ada": NAME_GRACE, "mallory": NAME_GRACE}
    assert outcomes["ada"] == outcomes["mallory"]
    limited = [r for r in outcomes["ada"] if isinstance(r, Refusal) and r.outcome is Outcome.LIMITED]
    assert len(limited) == 40 - NAME_GRACE and {r.retry_after for r in limited} == {1}
    # even the right password waits for the backoff: no check is made
    assert await auth.login("10.9.9.9", "ada", "right") == Refusal(Outcome.LIMITED, 1)
    # another user, from another address, logs in meanwhile
    ticket = await auth.login("10.8.8.8", "bob", "hunter2")
    assert isinstance(ticket, str)
    # the flood goes on: one check per wait, each wait twice the last
    checks_before = len(checked)
    for _ in range(5):
        clock.now += auth.names.wait("ada")
        results = await asyncio.gather(*(auth.login(f"10.1.0.{n}", "ada", "guess") for n in range(40)))
        assert sum(r == Refusal(Outcome.DENIED) for r in results) == 1
    assert len(checked) - checks_before == 5
    assert auth.names.wait("ada") == 32.0
    clock.now += 32.0
    assert isinstance(await auth.login("10.2.0.1", "ada", "right"), str)  # and the user is forgotten
    assert auth.names.wait("ada") == 0.0


async def test_a_flood_does_not_lock_a_user_out_of_where_it_logs_in_from(monkeypatch: pytest.MonkeyPatch) -> None:
    users, checked = counting_users(monkeypatch, {"ada": "right"})
    clock = Clock()
    auth = Authenticator(users, MemoryTickets(5.0), 5.0, LoginBounds(check_burst=1000), clock)
    assert isinstance(await auth.login("10.7.7.7", "ada", "right"), str)  # ada's usual place
    await asyncio.gather(*(auth.login(f"10.0.{n // 4}.{n}", "ada", "guess") for n in range(40)))
    wait = auth.names.wait("ada")
    assert wait > 0 and await auth.login("10.9.9.9", "ada", "right") == Refusal(Outcome.LIMITED, 1)
    assert isinstance(await auth.login("10.7.7.7", "ada", "right"), str)  # from there, ada gets in
    assert await auth.login("10.7.7.7", "ada", "guess") == Refusal(Outcome.DENIED)  # checked: it is ada's place
    # and ada's success let the flood off nothing: a fresh address still waits as long
    assert auth.names.wait("ada") >= wait and Counter(checked)["ada"] == NAME_GRACE + 3
    assert await auth.login("10.9.9.10", "ada", "guess") == Refusal(Outcome.LIMITED, 2)  # one failure more


async def test_a_spray_over_many_names_is_bounded_by_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    users, checked = counting_users(monkeypatch, {"ada": "right"})
    bounds = LoginBounds(threads=2, checks_per_sec=20.0, check_burst=5, queue=8, max_wait=0.5)
    auth = Authenticator(users, MemoryTickets(5.0), 5.0, bounds)
    started = time.monotonic()
    waves = []
    async with asyncio.timeout(10):
        for wave in range(20):  # 400 names in a second, each from its own address
            logins = (auth.login(f"10.{wave}.{n}.1", f"user-{wave}-{n}", "guess") for n in range(20))
            waves.append(asyncio.gather(*logins))
            await asyncio.sleep(0.05)
        results = [r for wave_results in await asyncio.gather(*waves) for r in wave_results]
    elapsed = time.monotonic() - started
    assert len(checked) <= 5 + 20.0 * elapsed + 1
    busy = [r for r in results if isinstance(r, Refusal) and r.outcome is Outcome.BUSY]
    assert len(busy) + len(checked) == 400 and {r.retry_after for r in busy} == {1}
    assert len(auth.names) == len(checked)  # a name refused unchecked is not charged


async def test_logins_for_names_nobody_is_guessing_go_first() -> None:
    release = threading.Event()
    order: list[str] = []
    queue = CheckQueue(1, CheckBudget(1000.0, 1000), size=10, max_wait=5.0)

    def check(name: str) -> bool:
        if name == "first":
            release.wait(5)
        order.append(name)
        return False

    async with asyncio.timeout(10):
        first = asyncio.create_task(queue.run(0, partial(check, "first")))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(queue.run(p, partial(check, n))) for p, n in ((9, "guess"), (0, "honest"))]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *waiting)
    assert order == ["first", "honest", "guess"]


async def test_a_waiting_check_gives_up_and_a_cancelled_one_frees_its_place() -> None:
    release = threading.Event()
    queue = CheckQueue(1, CheckBudget(1000.0, 1000), size=1, max_wait=0.1)
    async with asyncio.timeout(10):
        running = asyncio.create_task(queue.run(0, lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        assert await queue.run(0, lambda: True) is None  # waited 0.1 s: gave up
        waiting = asyncio.create_task(queue.run(0, lambda: True))
        await asyncio.sleep(0.01)
        assert queue.full() and await queue.run(0, lambda: True) is None  # no place to wait
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not queue.full()
        running.cancel()  # the check goes on in its thread, and holds its place until it ends
        assert await queue.run(0, lambda: True) is None
        release.set()
        assert await queue.run(0, lambda: True) is True


@pytest.mark.skipif(not LOWERS_PRIORITY, reason="the nice value is per thread on Linux only")
async def test_checks_run_at_the_lowest_priority_and_the_loop_does_not() -> None:
    queue = CheckQueue(1, CheckBudget(1000.0, 1000), size=1, max_wait=1.0)

    def niceness() -> bool:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 19

    loop_thread = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    async with asyncio.timeout(10):
        assert await queue.run(0, niceness) is True
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_thread


# ---- hashes ------------------------------------------------------------------------------


def test_new_hashes_have_one_lane_and_old_ones_still_verify() -> None:
    new = hash_password("correct horse")
    params = extract_parameters(new)
    assert params.parallelism == PARALLELISM == 1
    assert (params.memory_cost, params.time_cost) == (65536, 3)
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=4).hash("hunter2")
    assert extract_parameters(old).parallelism == 4
    users = Users({"old": old, "new": new})
    assert users.verify("old", "hunter2") and users.verify("new", "correct horse")
    assert not users.verify("old", "correct horse") and not users.verify("nobody", "hunter2")
    assert not users.verify("old", "\ud800")  # not text: a wrong password like any other


def test_a_check_lets_go_of_the_gil_while_it_hashes() -> None:
    """The event loop's thread keeps running beside a check: it never waits as long as the hashing
    takes (were the GIL held, it would wait at least the check's CPU time at once)."""
    users = Users({"ada": hash_password("x")})
    cpu = [0.0]

    def check() -> None:
        started = time.thread_time()
        users.verify("ada", "y")
        cpu[0] = time.thread_time() - started

    thread = threading.Thread(target=check)
    thread.start()
    longest, last = 0.0, time.perf_counter()
    for _ in range(10**9):
        if not thread.is_alive():
            break
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    thread.join(30)
    assert cpu[0] > 0.01 and longest < 0.75 * cpu[0]
