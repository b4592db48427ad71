"""hubbub.js in real headless Chromium: the page imports `/hubbub.js` from the server, connects to
`/ws` on its own host (the default URL), and exchanges messages with a Python client."""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.auth.logins import mint_token
from hubbub.client import client as hubbub_client
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server
from tests.app_server import Answer, AppServer, Request, reply
from tests.conftest import ServerFactory
from tests.e2e.test_chat_page import browser as browser  # Debian's chromium, with ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PAGE_SCRIPT = """async () => {
  const { Hubbub } = await import("/hubbub.js");
  const hub = new Hubbub({ name: "page" });
  window.hub = hub;
  window.got = [];
  hub.on("message", (m) => window.got.push(m));
  await hub.connect();
  await hub.join("lobby");
  return hub.url;
}"""


async def test_a_page_imports_hubbub_js_and_chats_with_a_python_client(browser: Any, server: Server) -> None:
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"http://127.0.0.1:{server.port}/healthz")  # any page of the server's origin
    url = await page.evaluate(PAGE_SCRIPT)
    assert url == f"ws://127.0.0.1:{server.port}/ws"
    async with hubbub_client.connect(f"ws://127.0.0.1:{server.port}/ws", name="py") as py:
        await py.join("lobby")
        await py.send("lobby", "from python")
        await page.wait_for_function("window.got.some((m) => m.message === 'from python')")
        offset = await page.evaluate("hub.send('lobby', {text: 'from the page'})")
        assert offset == 2
        while True:
            event = await py.next_event(timeout=10)
            if event["type"] == "new_message" and event["payload"]["from"] == "page":
                assert event["payload"]["message"] == {"text": "from the page"}
                break
    for _ in range(100):  # the Python client's departure reaches presence soon after it closed
        presence = await page.evaluate("hub.presence('lobby')")
        if [m["name"] for m in presence["members"]] == ["page"]:
            break
        await page.wait_for_timeout(100)
    assert [m["name"] for m in presence["members"]] == ["page"]
    await page.evaluate("hub.close()")
    assert await page.evaluate("hub.state") == "closed"
    assert errors == []


TOKEN_PAGE_SCRIPT = """async (tokens) => {
  const { Hubbub } = await import("/hubbub.js");
  const outcome = {};
  const good = new Hubbub({ token: tokens.good });
  await good.connect();
  outcome.joined = (await good.join("team-a")).room;
  outcome.forbidden = await good.join("other").then(() => null, (e) => e.code);
  good.close();
  const bad = new Hubbub({ token: tokens.bad, backoff: { base: 20, max: 100 } });
  const states = [];
  bad.on("state", (s) => states.push(s.state));
  outcome.refused = await bad.connect().then(() => null, (e) => e.code);
  outcome.dials = states.filter((s) => s === "connecting").length;
  outcome.final = bad.state;
  return outcome;
}"""


async def test_a_browser_tells_a_refused_token_from_a_dead_server(browser: Any, make_server: ServerFactory) -> None:
    """The browser sees a 401 only as a close before `open`; `/healthz` answering says the server is up."""
    secret = "x" * 32
    server = await make_server(auth_secret=secret)
    page = await (await browser.new_context()).new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/healthz")
    tokens = {
        "good": mint_token(secret, "ada", 60, rooms=["team-*"]),
        "bad": mint_token("y" * 32, "ada", 60),
    }
    outcome = await page.evaluate(TOKEN_PAGE_SCRIPT, tokens)
    expected = {"joined": "team-a", "forbidden": "forbidden", "refused": "refused", "dials": 3, "final": "closed"}
    assert outcome == expected


RPC_PAGE_SCRIPT = """async () => {
  const { Hubbub } = await import("/hubbub.js");
  const hub = new Hubbub({ name: "page" });
  await hub.connect();
  const outcome = {
    local: await hub.rpc("double", 21),
    proxied: await hub.rpc("echo", { list: [1, "two", null] }),
    refused: await hub.rpc("secret").then(() => null, (e) => e.code),
    unknown: await hub.rpc("nowhere").then(() => null, (e) => e.code),
  };
  hub.close();
  return outcome;
}"""


async def test_a_page_calls_an_app_method_and_the_rpc_proxy(browser: Any, make_server: ServerFactory) -> None:
    """`hub.rpc()` in Chromium: an in-process method, the app behind `--rpc-proxy`, and their codes."""

    async def app(request: Request) -> Answer:
        call = request.json()
        if call["method"] == "echo":
            return reply(200, {"data": call["data"]})
        return reply(403 if call["method"] == "secret" else 418, {})

    behind = await AppServer(app).start()
    try:
        hub = Hub(Settings(port=0, webhook_secret="e2e-secret", rpc_proxy=behind.url("/rpc")))
        hub.rpc("double")(lambda conn, data: data * 2)
        server = await make_server(hub)
        page = await (await browser.new_context()).new_page()
        await page.goto(f"http://127.0.0.1:{server.port}/healthz")
        outcome = await page.evaluate(RPC_PAGE_SCRIPT)
    finally:
        await behind.close()
    assert outcome == {
        "local": 42,
        "proxied": {"list": [1, "two", None]},
        "refused": "forbidden",
        "unknown": "unavailable",  # a name the app has not: asked of the proxy, whose 418 is unavailable
    }
