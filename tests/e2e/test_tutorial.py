"""examples/tutorial_static/index.html against examples/tutorial.py in real headless Chromium.

The server is `hubbub serve --app examples.tutorial:hub --static ... --tls-cert ... --users ...`
run from the repository root; the pages log in with `fetch`, connect over wss:// with the
ticket, chat in `general`, and one moves to another room. No page ever gets an event it does
not know: the page alerts on those, and an alert fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_chat_page import browser as browser  # Debian's chromium, with ARGS
from tests.integration.test_tls import tls_files as tls_files  # the self-signed certificate
from tests.integration.test_tutorial import PASSWORDS
from tests.integration.test_tutorial import tutorial_server as tutorial_server
from tests.integration.test_tutorial import users_file as users_file

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
VIEWPORTS = [{"width": 1280, "height": 800}, {"width": 390, "height": 844}]


async def _log_in(browser: Any, port: int, name: str, viewport: dict[str, int], alerts: list[str]) -> Any:
    context = await browser.new_context(ignore_https_errors=True, viewport=viewport)
    page = await context.new_page()

    async def on_dialog(dialog: Any) -> None:
        alerts.append(f"{name}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await page.goto(f"https://127.0.0.1:{port}/")
    await page.fill("#username", name)
    await page.fill("#password", PASSWORDS[name])
    await page.click("#log-in")
    await page.wait_for_function("document.querySelector('#status').dataset.state === 'open'")
    assert await page.locator("#chat").is_visible()
    # in general once its own first message comes back (on_connect joins after the handshake)
    await _say(page, f"{name} is here")
    await page.locator("#messages li.message", has_text=f"{name}: {name} is here").wait_for()
    return page


async def _say(page: Any, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v['width']}x{v['height']}")
async def test_two_users_chat_then_one_changes_room(
    browser: Any, tutorial_server: int, viewport: dict[str, int]
) -> None:
    alerts: list[str] = []
    ada = await _log_in(browser, tutorial_server, "ada", viewport, alerts)
    bob = await _log_in(browser, tutorial_server, "bob", viewport, alerts)
    await _say(ada, "hello bob")
    for page in (ada, bob):
        line = page.locator("#messages li.message", has_text="hello bob")
        await line.wait_for()
        assert "ada: hello bob" in await line.inner_text()
    await bob.fill("#message", "hi ada")
    await bob.press("#message", "Enter")
    await ada.locator("#messages li.message", has_text="bob: hi ada").wait_for()

    await bob.fill("#room", "quiet")
    await bob.click("#change-room")
    await bob.locator("#current-room", has_text="quiet").wait_for()
    await _say(bob, "anyone in quiet?")
    await bob.locator("#messages li.message", has_text="anyone in quiet?").wait_for()  # change_room was handled
    await _say(ada, "bob, are you there?")
    await ada.locator("#messages li.message", has_text="bob, are you there?").wait_for()
    await _say(ada, "last one")
    await ada.locator("#messages li.message", has_text="last one").wait_for()
    await bob.wait_for_timeout(300)
    assert await bob.locator("#messages li.message", has_text="are you there").count() == 0
    assert await bob.locator("#messages li.message", has_text="last one").count() == 0
    assert await ada.locator("#messages li.message", has_text="anyone in quiet?").count() == 0

    for page in (ada, bob):  # nothing overflows the viewport sideways
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], width
    await ada.screenshot(path=f"/tmp/hubbub-tutorial-{viewport['width']}.png")
    assert alerts == []
