"""The admin dashboard (src/hubbub/server/static/admin.*) in Debian's headless Chromium.

At a desktop size (1280x800) and a phone size (390x844): the login refused and accepted, live
counts, a chart that moves, a disconnect, a removal and a notice that real WebSocket clients see,
no sideways scroll, the keyboard alone, the data refused without a session, and every request the
page makes recorded: none to another origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.e2e.test_chat_page import SHOTS, SIZES, Watched, browser
from tests.helpers import EventClient, ws_url

__all__ = ["browser"]  # the fixture, shared with the chat page's tests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PASSWORD = "correct-horse-battery"
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
async def admin_server(make_server: ServerFactory) -> Server:
    server: Server = await make_server(admin_password=PASSWORD, rate_limit=0)
    return server


class Dashboard(Watched):
    """A page on /admin, recording every URL it requests."""

    def __init__(self, page: Any, origin: str) -> None:
        super().__init__(page)
        self.origin = origin
        self.requested: list[str] = []
        page.on("request", lambda request: self.requested.append(request.url))

    def assert_same_origin(self) -> None:
        foreign = [url for url in self.requested if not url.startswith(self.origin + "/")]
        assert foreign == [], foreign
        assert any(url.endswith("/admin/api/stats") for url in self.requested)


@pytest.fixture
async def clients() -> AsyncIterator[list[EventClient]]:
    opened: list[EventClient] = []
    yield opened
    for client in opened:
        await client.close()


async def _open(browser: Any, server: Server, viewport: dict[str, int]) -> Dashboard:
    context = await browser.new_context(viewport=viewport)
    origin = f"http://127.0.0.1:{server.port}"
    dashboard = Dashboard(await context.new_page(), origin)
    await dashboard.page.goto(f"{origin}/admin")
    await dashboard.page.locator("#password").wait_for()
    return dashboard


async def _log_in(dashboard: Dashboard, password: str = PASSWORD) -> None:
    page = dashboard.page
    await page.fill("#password", password)
    await page.press("#password", "Enter")


async def _logged_in(browser: Any, server: Server, viewport: dict[str, int]) -> Dashboard:
    dashboard = await _open(browser, server, viewport)
    await _log_in(dashboard)
    await dashboard.page.locator("#dashboard").wait_for()
    await dashboard.page.wait_for_function("() => document.querySelector('#live').dataset.state === 'live'")
    return dashboard


async def _shot(page: Any, what: str, viewport: dict[str, int]) -> None:
    await page.screenshot(path=str(SHOTS / f"{what}-{viewport['width']}x{viewport['height']}.png"), full_page=True)


async def _read_until_closed(client: EventClient) -> None:
    while True:
        await client.recv(timeout=10)


async def _confirm(page: Any) -> None:
    await page.locator("#confirm[open]").wait_for()
    await page.click("#confirm-yes")


@SIZES
async def test_login_refused_then_accepted(browser: Any, admin_server: Server, viewport: dict[str, int]) -> None:
    dashboard = await _open(browser, admin_server, viewport)
    page = dashboard.page
    await _log_in(dashboard, "not-the-password")
    await page.locator("#login-error", has_text="wrong password").wait_for()
    assert await page.locator("#dashboard").is_hidden()
    await _shot(page, "admin-login", viewport)
    await _log_in(dashboard)
    await page.locator("#dashboard").wait_for()
    await page.wait_for_function("() => document.querySelector('#t-nodes').textContent === '1'")
    assert await page.locator("#node").inner_text() == admin_server.hub.node_id
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    cookies = await page.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "hubbub_admin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert await page.evaluate("document.cookie") == ""  # not readable by a script
    await page.click("#logout")
    await page.locator("#login").wait_for()
    assert (await page.evaluate("fetch('/admin/api/stats').then(r => r.status)")) == 401
    dashboard.assert_same_origin()
    dashboard.assert_clean("401")  # the page's first look for a session, the wrong password, after the logout


@SIZES
async def test_the_data_is_refused_without_a_session(
    browser: Any, admin_server: Server, viewport: dict[str, int]
) -> None:
    dashboard = await _open(browser, admin_server, viewport)
    page = dashboard.page
    for call in ["stats", "series", "rooms", "room?room=lobby", "find?name=bob"]:
        assert await page.evaluate(f"fetch('/admin/api/{call}').then(r => r.status)") == 401, call
    status = await page.evaluate(
        """fetch('/admin/api/disconnect', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({user: 'bob'})}).then(r => r.status)"""
    )
    assert status == 401
    await _log_in(dashboard)
    await page.locator("#dashboard").wait_for()
    # logged in, an action without the CSRF token is still refused
    status = await page.evaluate(
        """fetch('/admin/api/disconnect', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({user: 'bob'})}).then(r => r.status)"""
    )
    assert status == 403
    dashboard.assert_clean("401", "403")


@SIZES
async def test_live_counts_and_a_chart_that_moves(
    browser: Any, admin_server: Server, clients: list[EventClient], viewport: dict[str, int]
) -> None:
    dashboard = await _logged_in(browser, admin_server, viewport)
    page = dashboard.page
    await page.wait_for_function("() => document.querySelector('#t-connections').textContent === '0'")
    chart = "document.querySelector('canvas[data-chart=\"connections\"]')"
    before = await page.evaluate(f"{chart}.toDataURL()")
    for i in range(3):
        clients.append(await EventClient.open(ws_url(admin_server, query=f"name=user{i}")))
    await clients[0].join("lobby")
    await page.wait_for_function("() => document.querySelector('#t-connections').textContent === '3'", timeout=10_000)
    await page.wait_for_function(f"() => {chart}.dataset.last === '3'", timeout=10_000)
    assert await page.evaluate(f"{chart}.toDataURL()") != before  # the line moved
    points = int(await page.evaluate(f"{chart}.dataset.points"))
    await page.wait_for_function(f"() => Number({chart}.dataset.points) > {points}", timeout=10_000)  # it goes on
    await page.locator("#rooms tr[data-room='lobby']").wait_for(timeout=10_000)  # the rooms list updates too
    assert await page.locator("#rooms tr[data-room='lobby'] td.num").first.inner_text() == "1"
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    await _shot(page, "admin-dashboard", viewport)
    dashboard.assert_same_origin()
    dashboard.assert_clean("401")


@SIZES
async def test_actions_reach_the_users_socket(
    browser: Any, admin_server: Server, clients: list[EventClient], viewport: dict[str, int]
) -> None:
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    carol = await EventClient.open(ws_url(admin_server, query="name=carol"))
    clients += [bob, carol]
    await bob.join("lobby")
    await carol.join("lobby")
    dashboard = await _logged_in(browser, admin_server, viewport)
    page = dashboard.page
    await page.click("#rooms tr[data-room='lobby'] button")
    await page.locator("#members li", has_text="bob").wait_for()
    # a notice, confirmed
    await page.fill("#notice-text", "maintenance at 10")
    await page.press("#notice-text", "Enter")
    await _confirm(page)
    got = await bob.recv_type("new_message")
    assert got["payload"]["from"] == "admin" and got["payload"]["message"]["text"] == "maintenance at 10"
    await page.locator("#messages li", has_text="maintenance at 10").wait_for()
    # carol out of the room; a cancel first does nothing
    await page.locator("#members li", has_text="carol").get_by_role("button", name="Remove").click()
    await page.click("#confirm-no")
    await page.locator("#members li", has_text="carol").get_by_role("button", name="Remove").click()
    await _confirm(page)
    assert (await carol.recv_type("unsubscribed"))["payload"] == {"room": "lobby"}
    await page.locator("#members li", has_text="carol").wait_for(state="detached")
    await _shot(page, "admin-room", viewport)
    # bob disconnected: his socket sees the close
    await page.locator("#members li", has_text="bob").get_by_role("button", name="Disconnect").click()
    await _confirm(page)
    with pytest.raises(ConnectionClosed) as closed:
        await _read_until_closed(bob)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    await page.locator("#status", has_text="bob disconnected").wait_for()
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    dashboard.assert_same_origin()
    dashboard.assert_clean("401")


@SIZES
async def test_find_a_user_by_keyboard_alone(
    browser: Any, admin_server: Server, clients: list[EventClient], viewport: dict[str, int]
) -> None:
    dave = await EventClient.open(ws_url(admin_server, query="name=dave"))
    clients.append(dave)
    dashboard = await _open(browser, admin_server, viewport)
    page = dashboard.page
    await page.keyboard.type(PASSWORD)  # the password field has the focus
    await page.keyboard.press("Enter")
    await page.locator("#dashboard").wait_for()
    await page.focus("#find-name")
    await page.keyboard.type("DAV")
    await page.keyboard.press("Enter")
    row = page.locator("#found li", has_text="dave")
    await row.wait_for()
    await page.keyboard.press("Tab")  # to Find
    await page.keyboard.press("Tab")  # to dave's Disconnect
    focused = await page.evaluate("document.activeElement.textContent")
    assert focused == "Disconnect"
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus
    await page.keyboard.press("Enter")
    await page.locator("#confirm[open]").wait_for()
    await page.keyboard.press("Shift+Tab")  # from Cancel (the default) to Confirm
    await page.keyboard.press("Enter")
    with pytest.raises(ConnectionClosed):
        await _read_until_closed(dave)
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    dashboard.assert_same_origin()
    dashboard.assert_clean("401")
