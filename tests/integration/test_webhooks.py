"""Webhooks on one node, over real sockets: every event signed, retries, order per room, bounds, flags.

The endpoint is `tests.webhook_receiver.Receiver`, an HTTP server in the test
that records each POST and answers 200, a scripted 500 / 404, or never.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from hubbub.core.settings import Settings
from hubbub.integration.webhooks import metric_labels, safe_url
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url
from tests.webhook_receiver import HANG, Receiver, Request

pytestmark = pytest.mark.timeout(60)

SECRET = "webhook-test-secret"


async def _hooked(make_server: ServerFactory, receiver: Receiver, **overrides: Any) -> Server:
    settings: dict[str, Any] = {"webhooks": (_url(receiver),), "webhook_secret": SECRET, **overrides}
    server: Server = await make_server(**settings)
    return server


def _url(receiver: Receiver) -> str:
    assert receiver._server is not None
    return f"http://127.0.0.1:{receiver._server.sockets[0].getsockname()[1]}/hook"


def _metric(server: Server, name: str) -> float:
    """The sum of the series of `name` (`metric` or `metric{label="v",...}`) that have the labels given."""
    text = server.hub.metrics.render().decode()
    metric, _, wanted = name.partition("{")
    want = set(re.findall(r'(\w+="[^"]*")', wanted))
    found = [
        float(value)
        for labels, value in re.findall(rf"^{re.escape(metric)}(?:\{{(.*)\}})? ([0-9.e+]+)$", text, re.MULTILINE)
        if want <= set(re.findall(r'(\w+="[^"]*")', labels))
    ]
    assert found, f"{name} not in /metrics"
    return sum(found)


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("id", "time")}


async def test_every_event_type_with_its_fields_and_a_valid_signature(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    server = await _hooked(make_server, receiver, webhook_messages=True)
    node = server.hub.node_id
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("lobby")
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    await bob.join("lobby")
    reply = await alice.request("send_message", {"room": "lobby", "message": {"text": "hi"}})
    assert reply["type"] == "ack"
    await alice.request("leave_room", {"room": "lobby"})
    await bob.close()
    await receiver.wait_for(lambda d: sum(e["type"] == "disconnected" for e in d) == 1)
    await receiver.wait_for(lambda d: "room_vacated" in [e["type"] for e in d])

    lobby = [_fields(e) for e in receiver.delivered if e.get("room") == "lobby"]
    sent = next(e["sent"] for e in lobby if e["type"] == "message")
    assert lobby == [  # one room: in the order it happened
        {"type": "room_occupied", "room": "lobby"},
        {"type": "member_joined", "room": "lobby", "user": "alice"},
        {"type": "member_joined", "room": "lobby", "user": "bob"},
        {"type": "message", "room": "lobby", "offset": 1, "from": "alice", "message": {"text": "hi"}, "sent": sent},
        {"type": "member_left", "room": "lobby", "user": "alice"},
        {"type": "member_left", "room": "lobby", "user": "bob"},
        {"type": "room_vacated", "room": "lobby"},
    ]
    users = [_fields(e) for e in receiver.delivered if "room" not in e]
    assert {"type": "connected", "user": "alice", "node": node} in users
    assert users.index({"type": "connected", "user": "bob", "node": node}) < users.index(
        {"type": "disconnected", "user": "bob", "code": 1000, "node": node}
    )
    ids = [e["id"] for e in receiver.delivered]
    assert len(set(ids)) == len(ids) == 10 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    for request in receiver.requests:
        assert request.signed_by(SECRET)
        assert not request.signed_by("another-secret")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-hubbub-event"] == request.event["type"]
        assert request.headers["user-agent"].startswith("hubbub/")
        stamp = dt.datetime.fromisoformat(request.event["time"])
        assert request.event["time"].endswith("Z") and abs(time.time() - stamp.timestamp()) < 30
    assert _metric(server, "hubbub_webhooks_sent_total") == 10
    await alice.close()


async def test_a_500_is_retried_then_delivered_and_the_rooms_order_is_kept(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    failures = iter([500, 503])

    def answer(request: Request) -> int | None:  # the first message fails twice; the room's next ones wait
        return next(failures, None) if request.event.get("message") == 0 else None

    receiver.answer = answer
    server = await _hooked(make_server, receiver, webhook_messages=True, webhook_concurrency=4, rate_limit=0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    for k in range(5):
        await alice.send("send_message", {"room": "r", "message": k})
    await receiver.wait_for(lambda d: sum(e["type"] == "message" for e in d) == 5)
    in_room = [e for e in receiver.delivered if e.get("room") == "r"]
    assert [e["type"] for e in in_room] == ["room_occupied", "member_joined"] + ["message"] * 5
    assert [e["message"] for e in in_room[2:]] == [0, 1, 2, 3, 4]
    attempts = [r for r in receiver.requests if r.event.get("message") == 0]
    assert [r.status for r in attempts] == [500, 503, 200]
    assert len({r.event["id"] for r in attempts}) == 1  # one id throughout: the app deduplicates by it
    assert attempts[1].at - attempts[0].at >= 0.1  # backed off
    assert _metric(server, "hubbub_webhooks_failed_attempts_total") == 2
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="expired"}') == 0
    await alice.close()


async def test_given_up_after_retry_for_and_counted_then_the_room_goes_on(
    make_server: ServerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = lambda request: 500 if request.event["type"] == "room_occupied" else None
    server = await _hooked(make_server, receiver, webhook_retry_for=1.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    await receiver.wait_for(lambda d: "member_joined" in [e["type"] for e in d])  # after room_occupied was given up
    failed = [r for r in receiver.requests if r.event["type"] == "room_occupied"]
    joined = next(r for r in receiver.requests if r.event["type"] == "member_joined")
    assert len(failed) >= 3 and all(r.status == 500 for r in failed)  # retried with backoff
    assert 0.9 < failed[-1].at - failed[0].at < 2.5  # the last attempt at --webhook-retry-for (loaded box: slack)
    assert joined.at >= failed[-1].at  # the room's next event waited for it
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="expired"}') == 1
    assert _metric(server, "hubbub_webhooks_failed_attempts_total") == len(failed)
    gave_up = [r for r in caplog.records if r.getMessage() == "webhook.dropped"]
    assert [(getattr(r, "reason", ""), getattr(r, "event", "")) for r in gave_up] == [("expired", "room_occupied")]
    assert all(SECRET not in str(vars(r)) for r in gave_up)
    await alice.close()


async def test_a_4xx_is_given_up_at_once(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.answers.extend([404])
    server = await _hooked(make_server, receiver, webhook_retry_for=30.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await receiver.wait_for(lambda _: len(receiver.requests) >= 1)  # connected: answered 404
    await alice.join("r")
    await receiver.wait_for(lambda d: [e["type"] for e in d] == ["room_occupied", "member_joined"])
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="rejected"}') == 1
    assert len([r for r in receiver.requests if r.status == 404]) == 1  # not retried
    await alice.close()


async def test_the_queue_is_bounded_and_what_is_dropped_is_counted(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    receiver.default = HANG
    server = await _hooked(
        make_server, receiver, webhook_messages=True, webhook_queue=5, webhook_concurrency=1, webhook_timeout=30.0
    )
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    for k in range(20):
        await alice.request("send_message", {"room": "r", "message": k})
    # connected + room_occupied + member_joined + 20 messages = 23; 5 fit (one of them in flight)
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="queue_full"}') == 18
    assert _metric(server, "hubbub_webhooks_queued") == 5
    await alice.close()


async def test_shutdown_drops_and_counts_what_is_left(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.default = HANG
    server = await _hooked(make_server, receiver, webhook_timeout=30.0, shutdown_timeout=1.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    hub = server.hub
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 5
    text = hub.metrics.render().decode()
    dropped = re.search(r'hubbub_webhooks_dropped_total\{reason="shutdown",url="[^"]*"\} ([0-9.]+)', text)
    assert dropped and float(dropped.group(1)) >= 3  # connected, room_occupied, member_joined (+ leaving)
    assert server.webhooks is not None and len(server.webhooks.tasks) == 0


async def test_a_webhook_that_never_answers_does_not_slow_a_rooms_messages(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Round trips of a room's messages with `--webhook-messages` to an endpoint that never answers,
    against the same without a webhook: within a generous bound (the box is shared)."""
    receiver.default = HANG
    hooked = await _hooked(
        make_server, receiver, webhook_messages=True, webhook_concurrency=2, webhook_timeout=30.0, rate_limit=0
    )
    plain = await make_server(rate_limit=0)

    async def median_round_trip(server: Server) -> float:
        sender = await EventClient.open(ws_url(server, query="name=s"))
        readers = [await EventClient.open(ws_url(server, query=f"name=m{i}")) for i in range(5)]
        await sender.join("room")
        for reader in readers:
            await reader.join("room")
        times = []
        for k in range(200):
            t0 = time.perf_counter()
            await sender.send("send_message", {"room": "room", "message": k})
            for reader in readers:
                await reader.recv_type("new_message")
            times.append(time.perf_counter() - t0)
        for client in (sender, *readers):
            await client.close()
        return sorted(times)[len(times) // 2]

    without = await median_round_trip(plain)
    with_hook = await median_round_trip(hooked)
    print(f"median round trip to 5 members: without webhook {without * 1e3:.2f} ms, with {with_hook * 1e3:.2f} ms")
    assert with_hook < 3 * without + 0.005
    assert _metric(hooked, 'hubbub_webhooks_dropped_total{reason="queue_full"}') == 0  # 200 < the queue bound
    assert _metric(hooked, "hubbub_webhooks_queued") >= 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook", "http://127.0.0.1:9/hook"], "--webhook needs --webhook-secret"),
        (["--webhook", "ftp://example.com/x", "--webhook-secret", "s"], "--webhook must be an http:// or https://"),
        (["--webhook", "https://user:pw@/x?token=t", "--webhook-secret", "s"], "--webhook must be an http://"),
        (["--webhook-messages"], "--webhook-messages needs --webhook"),
        (["--webhook", "http://h/", "--webhook-secret", "s", "--webhook-timeout", "0"], "--webhook-timeout must be"),
        (["--webhook", "http://h/", "--webhook-secret", "s", "--webhook-queue", "0"], "must be a positive integer"),
    ],
)
def test_bad_webhook_flags_get_a_message_and_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "hubbub", "serve", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "pw" not in out.stderr and "token=t" not in out.stderr


async def test_metrics_are_served(make_server: ServerFactory, receiver: Receiver) -> None:
    server = await _hooked(make_server, receiver)
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{server.port}/metrics")).text
    for name in ("hubbub_webhooks_sent_total", "hubbub_webhooks_failed_attempts_total", "hubbub_webhooks_queued"):
        assert name in text
    assert f'hubbub_webhooks_dropped_total{{reason="queue_full",url="{_url(receiver)}"}}' in text


async def test_a_slow_answer_times_out_and_is_retried(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.delay = 1.5  # every answer comes after --webhook-timeout: each attempt fails, however it ends
    server = await _hooked(make_server, receiver, webhook_timeout=0.3, webhook_retry_for=30.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await receiver.wait_for(lambda _: len(receiver.requests) >= 2, timeout=10)
    first, second = receiver.requests[:2]
    assert first.event["id"] == second.event["id"]  # the same event again, after the timeout and a backoff
    assert 0.3 + 0.1 <= second.at - first.at < 3  # timeout + backoff (0.125-0.25 s); slack for a loaded box
    assert _metric(server, "hubbub_webhooks_failed_attempts_total") >= 1
    assert _metric(server, "hubbub_webhooks_sent_total") == 0
    await alice.close()


async def test_posts_in_flight_are_bounded_by_the_concurrency(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.default = HANG
    server = await _hooked(make_server, receiver, webhook_concurrency=2, webhook_timeout=30.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    for k in range(5):  # five rooms, each with its own order: at most two are sent at once
        await alice.join(f"room{k}")
    await receiver.wait_for(lambda _: len(receiver.requests) >= 2)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 2
    assert _metric(server, "hubbub_webhooks_queued") == 1 + 5 * 2  # connected, and occupied + joined per room
    await alice.close()


def test_logged_urls_lose_credentials_and_query() -> None:
    assert safe_url("https://app:s3cret@example.com:8443/hooks/in?token=abc#x") == "https://example.com:8443/hooks/in"
    assert safe_url("http://example.com/h") == "http://example.com/h"


def test_the_secret_is_not_in_the_settings_repr() -> None:
    settings = Settings(webhooks=("http://127.0.0.1:9/h",), webhook_secret=SECRET)
    assert SECRET not in repr(settings)


async def test_the_queue_is_bounded_in_bytes_too(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.default = HANG
    server = await _hooked(
        make_server,
        receiver,
        webhook_messages=True,
        webhook_queue_bytes=100_000,
        webhook_concurrency=1,
        webhook_timeout=30.0,
        rate_limit=0,
    )
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    for _ in range(10):  # 3 events of 1 KiB, then messages of about 20 KiB each: four fit in 100,000 bytes
        await alice.request("send_message", {"room": "r", "message": "x" * 20_000})
    assert _metric(server, "hubbub_webhooks_queued") == 3 + 4
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="queue_full"}') == 6
    hooks = server.webhooks
    assert hooks is not None and hooks.endpoints[0].bytes <= 100_000
    await alice.close()


async def test_a_429_is_retried_after_its_retry_after(make_server: ServerFactory, receiver: Receiver) -> None:
    receiver.answers.extend([429])
    receiver.retry_after = "1"
    server = await _hooked(make_server, receiver, webhook_retry_for=30.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await receiver.wait_for(lambda d: [e["type"] for e in d] == ["connected"])
    first, second = receiver.requests[:2]
    assert first.status == 429 and second.status == 200 and first.event["id"] == second.event["id"]
    assert 1.0 <= second.at - first.at < 4  # not the 0.25 s backoff: the endpoint asked for 1 s
    await alice.close()


async def test_rooms_are_sent_in_parallel_each_in_order_through_random_failures(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """A room whose endpoint call hangs holds back only that room; through random 500s every other room's
    messages all arrive, each room's in publish order."""
    chance = random.Random(11)

    def answer(request: Request) -> int | None:
        if request.event.get("room") == "stuck":
            return HANG
        return 500 if chance.random() < 0.2 else 200

    receiver.answer = answer
    server = await _hooked(
        make_server, receiver, webhook_messages=True, webhook_concurrency=4, webhook_timeout=30.0, rate_limit=0
    )
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    rooms = ["stuck", *(f"room{k}" for k in range(8))]
    for room in rooms:
        await alice.join(room)
    for n in range(10):
        for room in rooms:
            await alice.send("send_message", {"room": room, "message": n})
    await receiver.wait_for(lambda d: sum(e["type"] == "message" for e in d) == 80, timeout=30)
    for room in rooms[1:]:
        got = [e["message"] for e in receiver.delivered if e["type"] == "message" and e["room"] == room]
        assert got == list(range(10)), (room, got)
    assert not any(e.get("room") == "stuck" for e in receiver.delivered)
    assert [r.event["type"] for r in receiver.requests if r.event.get("room") == "stuck"] == ["room_occupied"]
    assert _metric(server, "hubbub_webhooks_failed_attempts_total") > 0
    await alice.close()


async def test_shutdown_sends_the_departures_it_causes(make_server: ServerFactory, receiver: Receiver) -> None:
    server = await _hooked(make_server, receiver)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    await receiver.wait_for(lambda d: "member_joined" in [e["type"] for e in d])
    await server.stop()  # closes alice with 1001; her departures are queued, then sent within the grace
    in_room = [_fields(e) for e in receiver.delivered if e.get("room") == "r"]
    assert in_room[2:] == [{"type": "member_left", "room": "r", "user": "alice"}, {"type": "room_vacated", "room": "r"}]
    gone = {"type": "disconnected", "user": "alice", "code": 1001, "node": server.hub.node_id}
    assert gone in [_fields(e) for e in receiver.delivered]
    assert _metric(server, 'hubbub_webhooks_dropped_total{reason="shutdown"}') == 0


async def test_each_url_has_its_own_series_and_a_down_one_is_told_once_in_words(
    make_server: ServerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Two `--webhook` URLs, one refusing connections: the metrics' `url` label tells which fails (as logged,
    without credentials or query), and the log says so at once, in words, once, never with the secret."""
    caplog.set_level("INFO", logger="hubbub.integration.webhooks")
    with socket.socket() as closed:  # a port nobody listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        down_port = closed.getsockname()[1]
    down = f"http://bot:pw@127.0.0.1:{down_port}/down?token=t"
    server = await make_server(webhooks=(_url(receiver), down), webhook_secret=SECRET, webhook_retry_for=30.0)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    await receiver.wait_for(lambda d: "member_joined" in [e["type"] for e in d])
    up_label, down_label = _url(receiver), f"http://127.0.0.1:{down_port}/down"
    assert _metric(server, f'hubbub_webhooks_sent_total{{url="{up_label}"}}') == 3
    assert _metric(server, f'hubbub_webhooks_sent_total{{url="{down_label}"}}') == 0
    failing = [r for r in caplog.records if r.getMessage() == "webhook.failing"]
    for _ in range(100):  # the first attempt is made at once; its log line follows it
        if failing and _metric(server, f'hubbub_webhooks_failed_attempts_total{{url="{down_label}"}}') >= 3:
            break
        await asyncio.sleep(0.1)
        failing = [r for r in caplog.records if r.getMessage() == "webhook.failing"]
    assert _metric(server, f'hubbub_webhooks_failed_attempts_total{{url="{up_label}"}}') == 0
    assert _metric(server, f'hubbub_webhooks_failed_attempts_total{{url="{down_label}"}}') >= 3
    assert [(getattr(r, "url", ""), getattr(r, "error", "")) for r in failing] == [(down_label, "connection refused")]
    text = "\n".join(str(vars(r)) for r in caplog.records) + server.hub.metrics.render().decode()
    assert "pw" not in text and "token=t" not in text and SECRET not in text
    await alice.close()


async def test_a_recovery_is_told_once_after_the_failure(
    make_server: ServerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="hubbub.integration.webhooks")
    receiver.answers.extend([500, 503])
    server = await _hooked(make_server, receiver, webhook_retry_for=30.0, webhook_concurrency=1)
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("r")
    await receiver.wait_for(lambda d: "member_joined" in [e["type"] for e in d])
    said = [
        (r.getMessage(), getattr(r, "error", None)) for r in caplog.records if r.name == "hubbub.integration.webhooks"
    ]
    assert said == [("webhook.failing", "status 500"), ("webhook.recovered", None)], said
    recovered = next(r for r in caplog.records if r.getMessage() == "webhook.recovered")
    assert (vars(recovered)["failed_attempts"], vars(recovered)["url"]) == (2, _url(receiver))
    await alice.close()


def test_metric_labels_are_one_per_configured_url() -> None:
    assert metric_labels(["http://a/h?k=1", "http://u:p@a/h?k=2", "https://b/x"]) == [
        "http://a/h",
        "http://a/h#2",
        "https://b/x",
    ]
