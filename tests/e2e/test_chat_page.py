"""The chat page (src/hubbub/server/static/index.html, on hubbub.js) in Debian's headless Chromium.

Every test runs at a desktop size (1280x800) and a phone size (390x844). Each page records its
console errors and its HTTP answers of 400 and above, and a test ends by asserting there were none
(but the ones it provokes: a refused dial while the server is down, a wrong password).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.auth.passwords import hash_password
from hubbub.server.server import Server
from tests.conftest import ServerFactory

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = [{"width": 1280, "height": 800}, {"width": 390, "height": 844}]
SIZES = pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v['width']}x{v['height']}")
OPEN = "document.querySelector('#status').dataset.state === 'open'"
SHOTS = Path(os.environ.get("HUBBUB_SCREENSHOTS", "/tmp/hubbub-screenshots"))
"""Where the tests leave their screenshots, to be looked at."""


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


class Watched:
    """A page and what went wrong in it: console errors and HTTP answers >= 400."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status} {response.url}")

    def assert_clean(self, *expected: str) -> None:
        """No problem but those containing one of `expected`."""
        left = [p for p in self.problems if not any(e in p for e in expected)]
        assert left == [], left


async def _new_page(browser: Any, server: Server, viewport: dict[str, int]) -> Watched:
    context = await browser.new_context(viewport=viewport)
    watched = Watched(await context.new_page())
    await watched.page.goto(f"http://127.0.0.1:{server.port}/")
    return watched


async def _open_page(browser: Any, server: Server, name: str, viewport: dict[str, int]) -> Watched:
    """A page named `name`, in `lobby` (which a first visit joins by itself)."""
    watched = await _new_page(browser, server, viewport)
    page = watched.page
    await page.wait_for_function(OPEN)
    await page.fill("#name", name)
    await page.press("#name", "Enter")
    await page.wait_for_function(f"document.querySelector('#status').textContent === 'online as {name}'")
    await page.locator("#rooms li.current[data-room='lobby']").wait_for()
    await page.locator("#log-lobby li.system", has_text="you joined #lobby").wait_for()
    return watched


async def _say(page: Any, text: str) -> None:
    await page.fill("#message", text)
    await page.press("#message", "Enter")


async def _join(page: Any, room: str) -> None:
    await page.fill("#room", room)
    await page.click("#join")
    await page.locator(f"#rooms li.current[data-room='{room}']").wait_for()
    await page.locator(f"#log-{room} li.system", has_text=f"you joined #{room}").wait_for()


async def _in_view(page: Any, selector: str) -> bool:
    """Whether the element is wholly inside the window (Send must never be off-screen)."""
    script = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
        return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; }"""
    return bool(await page.evaluate(script, selector))


async def _shot(page: Any, what: str, viewport: dict[str, int]) -> None:
    """A screenshot in SHOTS (Playwright makes the directory), named by what it shows and the size."""
    await page.screenshot(path=str(SHOTS / f"{what}-{viewport['width']}x{viewport['height']}.png"))


def _members(page: Any) -> Any:
    return page.locator("#member-list li")


@SIZES
async def test_two_pages_chat_and_see_each_other(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    alice = await _open_page(browser, server, "alice", viewport)
    bob = await _open_page(browser, server, "bob", viewport)
    await alice.page.locator("#member-list li", has_text="bob").wait_for()  # presence, kept current
    assert await _members(bob.page).all_inner_texts() == ["alice", "bob (you)"]
    await _say(alice.page, "hello bob")
    for w in (alice, bob):
        line = w.page.locator("#log-lobby li.message", has_text="hello bob")
        await line.wait_for()
        assert "alice:" in await line.inner_text()
    await _say(bob.page, "hi alice")
    await alice.page.locator("#log-lobby li.message", has_text="bob: hi alice").wait_for()
    await alice.page.locator("#log-lobby li.system", has_text="bob joined").wait_for()
    assert await alice.page.locator("#log-lobby li.system", has_text="you joined").count() == 1  # once
    assert await alice.page.locator("#log-lobby li.system", has_text="alice joined").count() == 0
    assert await alice.page.locator("#message").is_visible() and await _in_view(alice.page, "#send")
    await _shot(alice.page, "chat", viewport)
    await bob.page.context.close()  # bob leaves: alice's list drops him
    await alice.page.wait_for_function("document.querySelectorAll('#member-list li').length === 1")
    await alice.page.locator("#log-lobby li.system", has_text="bob left").wait_for()
    alice.assert_clean()
    bob.assert_clean()


@SIZES
async def test_joining_switches_rooms_and_counts_unread(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    carol = await _open_page(browser, server, "carol", viewport)
    page = carol.page
    await _join(page, "random")
    assert await page.locator("#log-lobby").is_hidden() and await page.locator("#log-random").is_visible()
    await _say(page, "in random")
    await page.locator("#log-random li.message", has_text="in random").wait_for()
    assert await page.locator("#log-lobby li.message").count() == 0  # sent to the room shown
    for k in range(2):
        await server.hub.publish("lobby", f"lobby news {k}", "dan")
    badge = page.locator("#rooms li[data-room='lobby'] .unread")
    await page.wait_for_function("document.querySelector(\"#rooms li[data-room='lobby'] .unread\").textContent === '2'")
    assert await badge.get_attribute("aria-label") == "2 unread"
    assert (await page.title()).startswith("(2)")
    await _shot(page, "unread", viewport)
    await page.click("#rooms li[data-room='lobby'] .room")
    await page.locator("#log-lobby li.message", has_text="lobby news 1").wait_for()
    assert await badge.is_hidden()
    assert await page.locator("#room-title").inner_text() == "#lobby"
    await page.click("#rooms li[data-room='random'] .leave")
    await page.wait_for_function("!document.querySelector(\"#rooms li[data-room='random']\")")
    carol.assert_clean()


@SIZES
async def test_history_is_shown_on_join(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    for k in range(3):
        await server.hub.publish("archive", f"older {k}", "erin")
    frank = await _open_page(browser, server, "frank", viewport)
    await _join(frank.page, "archive")
    texts = await frank.page.locator("#log-archive li.message .text").all_inner_texts()
    if len(texts) < 3:
        await frank.page.locator("#log-archive li.message", has_text="older 2").wait_for()
        texts = await frank.page.locator("#log-archive li.message .text").all_inner_texts()
    assert texts == ["older 0", "older 1", "older 2"]  # oldest first, each once
    frank.assert_clean()


@SIZES
async def test_reload_restores_rooms_and_history(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    gina = await _open_page(browser, server, "gina", viewport)
    page = gina.page
    await _join(page, "books")
    await _say(page, "a book message")
    await page.locator("#log-books li.message", has_text="a book message").wait_for()
    await page.reload()
    await page.wait_for_function("document.querySelector('#status').textContent === 'online as gina'")
    assert await page.locator("#rooms li").evaluate_all("els => els.map(e => e.dataset.room)") == ["lobby", "books"]
    await page.locator("#rooms li.current[data-room='books']").wait_for()  # the room shown before
    await page.locator("#log-books li.message", has_text="a book message").wait_for()  # its history
    assert await page.locator("#log-books li.message").count() == 1
    await page.goto("about:blank")  # away: what comes meanwhile is unread when she is back
    for k in range(2):
        await server.hub.publish("lobby", f"while away {k}", "hal")
    await page.goto(f"http://127.0.0.1:{server.port}/")
    await page.wait_for_function(
        "document.querySelector(\"#rooms li[data-room='lobby'] .unread\")?.textContent === '2'"
    )
    await page.click("#rooms li[data-room='lobby'] .room")
    texts = await page.locator("#log-lobby li.message .text").all_inner_texts()
    assert texts == ["while away 0", "while away 1"]
    gina.assert_clean()


@SIZES
async def test_messages_typed_offline_are_sent_after_the_reconnect(
    browser: Any, make_server: ServerFactory, viewport: dict[str, int]
) -> None:
    server = await make_server()
    hana = await _open_page(browser, server, "hana", viewport)
    page = hana.page
    await _say(page, "before the restart")
    await page.locator("#log-lobby li.message", has_text="before the restart").wait_for()
    port = server.port
    await server.stop()
    await page.wait_for_function("document.querySelector('#status').dataset.state !== 'open'")
    await _say(page, "typed while offline")
    await page.locator("#log-lobby li.pending", has_text="typed while offline").wait_for()
    assert await page.locator("#message").input_value() == ""
    await page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('reconnecting')", timeout=15000
    )
    await _shot(page, "offline", viewport)
    await make_server(port=port)
    await page.wait_for_function(OPEN, timeout=45000)
    await page.locator("#log-lobby li.message", has_text="typed while offline").wait_for()
    assert await page.locator("#log-lobby li.pending").count() == 0
    assert await page.locator("#log-lobby li.message", has_text="before the restart").count() == 1
    hana.assert_clean("WebSocket connection", "ERR_CONNECTION_REFUSED")


@SIZES
async def test_a_dropped_socket_resumes_without_losing_messages(
    browser: Any, server: Server, viewport: dict[str, int]
) -> None:
    ivan = await _open_page(browser, server, "ivan", viewport)
    page = ivan.page
    await _say(page, "before the drop")
    await page.locator("#log-lobby li.message", has_text="before the drop").wait_for()
    for conn in list(server.hub.connections):
        if conn.identity == "ivan":
            conn.abort()  # the network drops the page's socket
    for k in range(3):  # published while the page is away
        await server.hub.publish("lobby", f"missed {k}", "other")
    await page.wait_for_function(OPEN, timeout=30000)
    for k in range(3):
        await page.locator("#log-lobby li.message", has_text=f"missed {k}").wait_for()
    assert await page.locator("#log-lobby li.message", has_text="before the drop").count() == 1  # no repeat
    ivan.assert_clean()


@SIZES
async def test_invalid_names_are_explained_in_words(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    jo = await _open_page(browser, server, "jo", viewport)
    page = jo.page
    await page.fill("#room", "bad room!")
    await page.click("#join")
    error = page.locator("#room-error")
    await error.wait_for()
    text = await error.inner_text()
    assert "letters" in text and "digits" in text and "not a space" in text
    assert "[" not in text and "match the requested format" not in text
    assert await page.locator("#room").get_attribute("aria-invalid") == "true"
    await page.fill("#room", "x" * 129)
    await page.click("#join")
    await page.locator("#room-error", has_text="at most 128 characters").wait_for()
    assert await page.locator("#rooms li").count() == 1  # nothing was joined
    await page.fill("#name", "")
    await page.press("#name", "Enter")
    await page.locator("#name-error", has_text="at least one character").wait_for()
    jo.assert_clean()


@SIZES
async def test_the_server_refuses_a_room_in_words(
    browser: Any, make_server: ServerFactory, viewport: dict[str, int]
) -> None:
    server = await make_server(max_rooms_per_connection=2)
    kim = await _open_page(browser, server, "kim", viewport)
    await _join(kim.page, "second")
    await kim.page.fill("#room", "third")
    await kim.page.click("#join")
    await kim.page.locator("#notice", has_text="leave one before joining another").wait_for()
    await _shot(kim.page, "notice", viewport)
    assert await kim.page.locator("#rooms li[data-room='third']").count() == 0
    await kim.page.locator("#rooms li.current[data-room='second']").wait_for()  # back where she was
    kim.assert_clean()


@SIZES
async def test_rate_limits_are_explained_and_the_message_kept(
    browser: Any, make_server: ServerFactory, viewport: dict[str, int]
) -> None:
    server = await make_server(rate_limit=1, rate_burst=6)
    lee = await _open_page(browser, server, "lee", viewport)
    page = lee.page
    for k in range(8):
        await _say(page, f"quick {k}")
    await page.locator("#notice", has_text="You are sending too fast").wait_for()
    failed = page.locator("#log-lobby li.failed").last
    await failed.wait_for()
    text = await failed.locator(".text").inner_text()
    await page.wait_for_timeout(2500)  # the bucket refills at one a second
    await failed.locator("button", has_text="Retry").click()  # kept, to send again
    await page.locator("#log-lobby li.message", has_text=text).wait_for()
    lee.assert_clean()


@SIZES
async def test_login_form_when_the_server_needs_one(
    browser: Any, make_server: ServerFactory, tmp_path: Path, viewport: dict[str, int]
) -> None:
    users = tmp_path / "users"
    users.write_text(f"ada:{hash_password('correct horse')}\n")
    server = await make_server(users_file=str(users))
    watched = await _new_page(browser, server, viewport)
    page = watched.page
    await page.locator("#login").wait_for()
    assert await page.locator("#app").is_hidden()
    await page.fill("#username", "ada")
    await page.fill("#password", "wrong")
    await page.click("#log-in")
    await page.locator("#login-error", has_text="Wrong name or password").wait_for()
    await _shot(page, "login", viewport)
    await page.fill("#password", "correct horse")
    await page.press("#password", "Enter")
    await page.wait_for_function("document.querySelector('#status').textContent === 'online as ada'")
    await _say(page, "logged in")
    await page.locator("#log-lobby li.message", has_text="ada: logged in").wait_for()
    watched.assert_clean("401")


async def test_no_horizontal_scroll_at_360_px(browser: Any, server: Server) -> None:
    watched = await _open_page(browser, server, "a-rather-long-name-for-a-phone", {"width": 360, "height": 640})
    page = watched.page
    for room in ("a-room-with-a-long-name", "another-long-room-name", "third"):
        await _join(page, room)
    await _say(page, "w" * 300)  # one long word
    await page.locator("#log-third li.message").wait_for()
    await page.fill("#room", "bad room!")
    await page.click("#join")
    await page.locator("#room-error").wait_for()
    widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] == 360, widths
    assert await _in_view(page, "#send")
    await _shot(page, "narrow", {"width": 360, "height": 640})
    watched.assert_clean()


@SIZES
async def test_labels_focus_and_live_regions(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    mia = await _open_page(browser, server, "mia", viewport)
    page = mia.page
    for label in ("Your name", "Room to join", "Message"):
        assert await page.get_by_label(label, exact=True).count() == 1, label
    assert await page.locator("#log-lobby").get_attribute("aria-live") == "polite"
    assert await page.locator("[role=status]").count() == 1
    await page.fill("#room", "music")
    await page.press("#room", "Enter")  # Enter joins, and the focus goes to the message box
    await page.locator("#rooms li.current[data-room='music']").wait_for()
    assert await page.evaluate("document.activeElement.id") == "message"
    await page.keyboard.type("typed at once")
    await page.keyboard.press("Enter")
    await page.locator("#log-music li.message", has_text="typed at once").wait_for()
    assert await page.get_by_role("button", name="Leave #music").count() == 1
    mia.assert_clean()


async def test_a_rename_while_offline_keeps_the_waiting_message(browser: Any, make_server: ServerFactory) -> None:
    server = await make_server()
    watched = await _open_page(browser, server, "nina", VIEWPORTS[0])
    page = watched.page
    port = server.port
    await server.stop()
    await page.wait_for_function("document.querySelector('#status').dataset.state !== 'open'")
    await _say(page, "said as nina")
    await page.locator("#log-lobby li.pending", has_text="said as nina").wait_for()
    await page.fill("#name", "nora")  # a new connection while the server is down
    await page.press("#name", "Enter")
    await make_server(port=port)
    await page.wait_for_function("document.querySelector('#status').textContent === 'online as nora'", timeout=45000)
    await page.locator("#log-lobby li.message", has_text="nora: said as nina").wait_for()  # sent by the new one
    assert await page.locator("#log-lobby li.pending, #log-lobby li.failed").count() == 0
    watched.assert_clean("WebSocket connection", "ERR_CONNECTION_REFUSED")
