"""hubbub.js's SSE fallback in real headless Chromium, behind a proxy that refuses WebSockets.

tests/noupgrade_proxy.py forwards HTTP to the server but answers every `Upgrade` request 403, as a
corporate proxy or an antivirus does. The chat page loaded through it still works, over `GET /sse`
down and `POST /sse/send` up (join, send, receive, presence), at desktop and phone sizes; and the
fallback's cost, the time hubbub.js takes to connect when the WebSocket is refused, is measured
beside the time it takes over a WebSocket.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.e2e.test_chat_page import OPEN, SIZES, Watched, _members, _say, _shot
from tests.e2e.test_chat_page import browser as browser  # Debian's chromium, with ARGS
from tests.noupgrade_proxy import NoUpgradeProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
async def proxy(server: Server) -> AsyncIterator[NoUpgradeProxy]:
    async with NoUpgradeProxy(server.port) as running:
        yield running


async def _chat_page(browser: Any, port: int, name: str, viewport: dict[str, int]) -> Watched:
    """The chat page of the server at `port` (the proxy's or the server's own), named `name`, in `lobby`."""
    context = await browser.new_context(viewport=viewport)
    watched = Watched(await context.new_page())
    page = watched.page
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.wait_for_function(OPEN, timeout=20000)
    await page.fill("#name", name)
    await page.press("#name", "Enter")
    await page.wait_for_function(f"document.querySelector('#status').textContent === 'online as {name}'")
    await page.locator("#log-lobby li.system", has_text="you joined #lobby").wait_for()
    return watched


@SIZES
async def test_the_chat_page_works_where_websockets_are_refused(
    browser: Any, server: Server, proxy: NoUpgradeProxy, viewport: dict[str, int]
) -> None:
    alice = await _chat_page(browser, proxy.port, "alice", viewport)  # behind the proxy: SSE
    bob = await _chat_page(browser, server.port, "bob", viewport)  # direct: a WebSocket
    assert await alice.page.get_attribute("#status", "data-transport") == "sse"
    assert await bob.page.get_attribute("#status", "data-transport") == "websocket"
    assert proxy.refused >= 1
    await alice.page.locator("#member-list li", has_text="bob").wait_for()  # presence over SSE
    assert await _members(bob.page).all_inner_texts() == ["alice", "bob (you)"]
    await _say(alice.page, "hello from behind the proxy")
    await _say(bob.page, "hello from the open network")
    for w in (alice, bob):
        await w.page.locator("#log-lobby li.message", has_text="alice: hello from behind the proxy").wait_for()
        await w.page.locator("#log-lobby li.message", has_text="bob: hello from the open network").wait_for()
    await _shot(alice.page, "sse-fallback", viewport)
    await bob.page.context.close()
    await alice.page.locator("#log-lobby li.system", has_text="bob left").wait_for()
    # the WebSocket the proxy refused is the one error a page behind it sees
    alice.assert_clean("WebSocket connection")
    bob.assert_clean()


CONNECT_TIME = """async () => {
  const { Hubbub } = await import("/hubbub.js");
  const hub = new Hubbub({ name: "timer" });
  const started = performance.now();
  await hub.connect();
  const took = performance.now() - started;
  const transport = hub.transport;
  hub.close();
  return { took, transport };
}"""


async def _connect_times(browser: Any, port: int, runs: int) -> tuple[list[float], set[str]]:
    """`runs` times, a fresh page (a new page life: nothing remembered) connects hubbub.js; ms each."""
    times, transports = [], set()
    context = await browser.new_context()
    for _ in range(runs):
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/healthz")
        result = await page.evaluate(CONNECT_TIME)
        times.append(result["took"])
        transports.add(result["transport"])
        await page.close()
    await context.close()
    return times, transports


async def test_the_fallbacks_cost_measured(browser: Any, server: Server) -> None:
    """Time from `connect()` to open: over a WebSocket, and over SSE after the WebSocket was refused.

    On loopback, and through proxies that add 20 ms each way (a 40 ms round trip, as across a
    country): one proxy passes WebSockets, the other refuses them, so both pay the same latency.
    The refusal costs the refused upgrade's round trip before the SSE stream's `hello`. The medians
    are printed (`pytest -s`) for the report, and bounded here so that a regression shows.
    """
    medians: dict[str, float] = {}
    for delay in (0.0, 0.02):
        async with (
            NoUpgradeProxy(server.port, upgrades=True, delay=delay) as plain,
            NoUpgradeProxy(server.port, delay=delay) as refusing,
        ):
            direct, over_ws = await _connect_times(browser, plain.port, 5)
            fallback, over_sse = await _connect_times(browser, refusing.port, 5)
        assert over_ws == {"websocket"} and over_sse == {"sse"}
        rtt = f"{round(delay * 2000)} ms round trip"
        medians[f"websocket, {rtt}"] = statistics.median(direct)
        medians[f"sse after a refused websocket, {rtt}"] = statistics.median(fallback)
    print("\nhubbub.js connect, median of 5 fresh pages:")
    for what, ms in medians.items():
        print(f"  {what}: {ms:.1f} ms")
    assert medians["sse after a refused websocket, 40 ms round trip"] < 2000


CROSS_ORIGIN = """async (base) => {
  const { Hubbub } = await import(base + "/hubbub.js");
  const hub = new Hubbub({ url: base.replace("http:", "ws:") + "/ws", name: "visitor" });
  await hub.connect();
  const joined = await hub.join("lobby");
  const offset = await hub.send("lobby", "from another origin");
  const transport = hub.transport;
  hub.close();
  return { transport, joined, offset };
}"""


async def test_a_page_of_another_allowed_origin_falls_back_too(browser: Any, make_server: ServerFactory) -> None:
    """An app's page beside hubbub (another origin, in `--allowed-origin`) behind a proxy that refuses
    WebSockets: the stream is read and the up-channel posted in CORS mode (the POST's custom header
    is preflighted), with its cookies (`credentials: "include"`, answered by
    `Access-Control-Allow-Credentials`), here a name identifying it."""
    app = await make_server()  # only an origin for the page
    origin = f"http://127.0.0.1:{app.port}"
    hub = await make_server(allowed_origins=(origin,))
    async with NoUpgradeProxy(hub.port) as proxy:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{origin}/healthz")
        outcome = await page.evaluate(CROSS_ORIGIN, f"http://127.0.0.1:{proxy.port}")
    assert outcome == {"transport": "sse", "joined": {"room": "lobby", "offset": 0}, "offset": 1}


async def test_a_cut_stream_resumes_the_chat_without_losing_messages(
    browser: Any, server: Server, proxy: NoUpgradeProxy
) -> None:
    """The network drops the page's stream (cut at the proxy); what was published meanwhile shows
    once the page is back, once, and what it sent before is not repeated."""
    ivan = await _chat_page(browser, proxy.port, "ivan", {"width": 1280, "height": 800})
    page = ivan.page
    await _say(page, "before the drop")
    await page.locator("#log-lobby li.message", has_text="before the drop").wait_for()
    proxy.cut()
    for k in range(3):  # published while the page is away
        await server.hub.publish("lobby", f"missed {k}", "other")
    await page.wait_for_function(OPEN, timeout=30000)
    for k in range(3):
        await page.locator("#log-lobby li.message", has_text=f"missed {k}").wait_for()
        assert await page.locator("#log-lobby li.message", has_text=f"missed {k}").count() == 1
    assert await page.locator("#log-lobby li.message", has_text="before the drop").count() == 1
    assert await page.get_attribute("#status", "data-transport") == "sse"
    ivan.assert_clean("WebSocket connection")
