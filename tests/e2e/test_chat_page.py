"""The chat page in real headless Chromium (Debian's), driven by Playwright.

Two pages with two names join one room and chat; a server restart makes the
page reconnect by itself and re-join its room.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.server import Server
from tests.conftest import ServerFactory

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which("chromium"):
        message = "Debian's chromium is not installed: apt-get install -y chromium"
        if os.environ.get("HUBBUB_REQUIRE_BROWSER"):
            pytest.fail(message)  # CI installs it, so there a missing browser is a failure
        pytest.skip(message)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        await browser.close()


async def _open_page(browser: Any, server: Server, name: str) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/")
    await page.fill("#name", name)
    await page.click("#rename")
    await page.wait_for_function(f"document.querySelector('#status').textContent.includes('{name}')")
    await page.fill("#room", "lobby")
    await page.click("#join")
    await page.wait_for_selector("#rooms li[data-room='lobby']")
    return page


async def test_two_pages_chat_in_one_room(browser: Any, server: Server) -> None:
    alice = await _open_page(browser, server, "alice")
    bob = await _open_page(browser, server, "bob")
    await alice.fill("#message", "hello bob")
    await alice.click("#send")
    for page in (alice, bob):
        line = page.locator("#log li.message", has_text="hello bob")
        await line.wait_for()
        assert "alice:" in await line.inner_text()
    await bob.fill("#message", "hi alice")
    await bob.press("#message", "Enter")
    await alice.locator("#log li.message", has_text="hi alice").wait_for()
    await bob.screenshot(path="/tmp/hubbub-chat.png")


async def test_errors_are_shown(browser: Any, server: Server) -> None:
    page = await _open_page(browser, server, "carol")
    await page.fill("#room", "bad room!")
    await page.eval_on_selector("#room", "el => el.removeAttribute('pattern')")
    await page.click("#join")
    await page.locator("#log li.error", has_text="bad_payload").wait_for()


async def test_page_reconnects_and_rejoins(browser: Any, make_server: ServerFactory) -> None:
    server = await make_server()
    page = await _open_page(browser, server, "dave")
    port = server.port
    await server.stop()
    await page.wait_for_function("document.querySelector('#status').dataset.state === 'closed'")
    await make_server(port=port)
    await page.wait_for_function("document.querySelector('#status').dataset.state === 'open'", timeout=30000)
    await page.fill("#message", "back again")
    await page.click("#send")
    await page.locator("#log li.message", has_text="back again").wait_for()


async def test_page_resumes_its_rooms_without_losing_messages(browser: Any, server: Server) -> None:
    page = await _open_page(browser, server, "erin")
    await page.fill("#message", "before the drop")
    await page.click("#send")
    await page.locator("#log li.message", has_text="before the drop").wait_for()
    for conn in list(server.hub.connections):
        if conn.identity == "erin":
            conn.abort()  # the network drops the page's socket
    for k in range(3):  # published in process while the page is away
        await server.hub.publish("lobby", f"missed {k}", "other")
    await page.wait_for_function("document.querySelector('#status').dataset.state === 'open'", timeout=30000)
    for k in range(3):
        await page.locator("#log li.message", has_text=f"missed {k}").wait_for()
    assert await page.locator("#log li.message", has_text="before the drop").count() == 1  # no repeat
