"""examples/fastapi_app for real: a private Redis, two hubbub nodes, the app under uvicorn, Chromium.

The nodes are started as the example's README says (`--connect-proxy`, `--publish-proxy`, `--webhook`
with `--webhook-messages`, `--api-key`, `--allowed-origin` of the app's origin). Two users log in to
the app, one page connected to each node; they chat, see each other in presence, a banned word is
refused in words, the admin's notice (published by the app with `hubbub.client.api`) reaches both pages, the
history stored by the webhooks comes back after a reload, and logging out closes the user's sockets.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Node, RedisProcess, free_port, wait_port
from tests.e2e.test_chat_page import browser as browser  # Debian's chromium, with ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("HUBBUB_SCREENSHOTS", tempfile.gettempdir()))
WAIT = 20_000
"""Milliseconds a page may take to show something (a loaded 2-core machine)."""


CONNECT_WITHOUT_A_SESSION = """async (node) => {
  const { Hubbub } = await import(node + "/hubbub.js");
  const hub = new Hubbub({ url: node.replace("http:", "ws:") + "/ws", backoff: { base: 20, max: 100 } });
  return await hub.connect().then(() => "open", (error) => error.code);
}"""


@dataclass
class Example:
    """The running example: the app's URL, its two hubbub nodes, and the app's log."""

    app: str
    nodes: list[Node]
    log: Any

    def app_log(self) -> str:
        self.log.seek(0)
        return str(self.log.read().decode())


def _require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        message = "the example needs its extra: pip install -e '.[examples]'"
        if os.environ.get("HUBBUB_REQUIRE_BROWSER"):
            pytest.fail(message)  # CI installs the test extra, which includes it
        pytest.skip(message)


@pytest.fixture
async def example() -> AsyncIterator[Example]:
    _require_fastapi()
    key, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    redis = RedisProcess()
    await redis.start()
    app_port = free_port()
    app = f"http://127.0.0.1:{app_port}"
    nodes = [
        Node(
            redis.url,
            *("--api-key", key, "--webhook-secret", secret, "--allowed-origin", app),
            *("--connect-proxy", f"{app}/hubbub/connect", "--publish-proxy", f"{app}/hubbub/publish"),
            *("--webhook", f"{app}/hubbub/events", "--webhook-messages", "--rate-limit", "20"),
            node_id=f"n{k}",
        )
        for k in (1, 2)
    ]
    env = {
        **os.environ,
        "HUBBUB_API_KEY": key,
        "HUBBUB_WEBHOOK_SECRET": secret,
        "EXAMPLE_HUBBUB_NODES": ",".join(f"http://127.0.0.1:{node.port}" for node in nodes),
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a pipe could fill up
    command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app.app:app", "--port", str(app_port)]
    proc = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=env, stderr=log)
    try:
        await wait_port(app_port, timeout=30)
        for node in nodes:
            await node.start()
        yield Example(app, nodes, log)
    finally:
        for node in nodes:
            node.stop()
        proc.terminate()
        proc.wait(10)
        redis.stop()
        log.close()


async def _log_in(browser: Any, example: Example, user: str, password: str, node: int, size: tuple[int, int]) -> Any:
    """A page of its own (its own cookies) logged in to the app as `user`, connected to hubbub node `node`."""
    context = await browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    await page.goto(f"{example.app}/?node={node}")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-form button")
    await page.wait_for_selector("#status[data-state='open']", timeout=WAIT)
    await page.locator("#room-title", has_text="# lobby").wait_for(timeout=WAIT)
    return page


async def _send(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def _line(page: Any, text: str, kind: str = "message") -> Any:
    return page.locator(f"#log li.{kind}", has_text=text)


async def _stored(page: Any, count: int) -> list[dict[str, Any]]:
    """The lobby's messages as the app stored them from webhooks, once there are `count` (with the page's cookie)."""
    deadline = time.monotonic() + 20
    while True:
        answer = await page.context.request.get(f"{page.url.split('?')[0]}rooms/lobby/messages")
        messages: list[dict[str, Any]] = (await answer.json())["messages"]
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.1)


async def test_two_users_on_two_nodes_chat_through_the_app(browser: Any, example: Example) -> None:
    # a page that is not logged in is asked to log in; a wrong password is said in words
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{example.app}/")
    await page.fill("#username", "alice")
    await page.fill("#password", "not her password")
    await page.click("#login-form button")
    await page.locator("#login-error", has_text="Wrong name or password").wait_for(timeout=WAIT)

    alice = await _log_in(browser, example, "alice", "wonderland", 1, (1280, 800))
    bob = await _log_in(browser, example, "bob", "builder", 2, (390, 844))
    assert "node 1" in await alice.inner_text("#status")
    assert "node 2" in await bob.inner_text("#status")

    # presence across the nodes, with the display names the connect proxy gave as info
    await alice.locator("#members li[data-name='bob']", has_text="Bob").wait_for(timeout=WAIT)
    await bob.locator("#members li[data-name='alice']", has_text="Alice").wait_for(timeout=WAIT)

    await _send(alice, "hello bob")
    await _line(bob, "hello bob").wait_for(timeout=WAIT)
    await _send(bob, "hi alice, all well?")
    await _line(alice, "hi alice, all well?").wait_for(timeout=WAIT)

    # the publish proxy refuses a banned word: the sender is told why, nobody else sees it
    await _send(bob, "well, darn it")
    refused = _line(bob, "well, darn it", "refused")
    await refused.wait_for(timeout=WAIT)
    assert "a word this chat does not allow" in await refused.inner_text()
    await _send(bob, "sorry about that")  # the client's order is kept: once this arrives, the refused one never will
    await _line(alice, "sorry about that").wait_for(timeout=WAIT)
    assert await alice.locator("#log li", has_text="darn").count() == 0

    # the admin's notice: the app publishes it with hubbub.client.api to every room, both nodes deliver it
    await alice.fill("#announcement", "maintenance at 18:00")
    await alice.click("#announce-form button")
    for page in (alice, bob):
        await _line(page, "maintenance at 18:00", "notice").wait_for(timeout=WAIT)
    assert "Alice announces" in await _line(bob, "maintenance at 18:00", "notice").inner_text()

    await bob.screenshot(path=str(SHOTS / "hubbub-fastapi-390x844.png"))

    # the webhooks stored the chat, once each, in offset order; a reload shows it from the app's store
    stored = await _stored(bob, 4)
    texts = [m["message"].get("text", m["message"].get("notice")) for m in stored]
    assert texts == ["hello bob", "hi alice, all well?", "sorry about that", "maintenance at 18:00"]
    assert [m["offset"] for m in stored] == sorted(m["offset"] for m in stored)
    await bob.reload()
    await bob.wait_for_selector("#status[data-state='open']", timeout=WAIT)
    for text in texts[:3]:
        await bob.locator("#log li.message[data-source='app']", has_text=text).wait_for(timeout=WAIT)
    await bob.locator("#log li.notice[data-source='app']", has_text="maintenance").wait_for(timeout=WAIT)

    # the webhooks' membership events, as the app logged them
    # bob joined, and joined again after his reload: webhooks tell every transition, so once or twice
    await alice.locator("#activity li", has_text="bob joined #lobby").first.wait_for(timeout=WAIT)

    await alice.screenshot(path=str(SHOTS / "hubbub-fastapi-1280x800.png"))
    await bob.screenshot(path=str(SHOTS / "hubbub-fastapi-390x844-reloaded.png"))

    # logging out ends the session on hubbub too: the app disconnects bob's sockets on every node with
    # hubbub.client.api, so his second tab (the same cookie, on node 1) is closed with the app's code and says so
    second_tab = await bob.context.new_page()
    await second_tab.goto(f"{example.app}/?node=1")
    await second_tab.wait_for_selector("#status[data-state='open']", timeout=WAIT)
    await bob.click("#logout")
    await bob.locator("#login-error", has_text="You logged out").wait_for(timeout=WAIT)
    await second_tab.locator("#login-error", has_text="You were logged out").wait_for(timeout=WAIT)
    await alice.locator("#members li[data-name='bob']").wait_for(state="detached", timeout=WAIT)

    # without a session the app answers hubbub's connect proxy 401; the page, on the app's origin, reads the
    # node's /healthz across origins, so hubbub.js tells the refusal from a dead server and stops
    node = f"http://127.0.0.1:{example.nodes[1].port}"
    assert await bob.evaluate(CONNECT_WITHOUT_A_SESSION, node) == "refused"

    assert alice.errors == [] and bob.errors == []
    assert "Traceback" not in example.app_log()
    assert all("Traceback" not in node.stderr() for node in example.nodes)
