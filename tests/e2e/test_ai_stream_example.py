"""examples/ai_stream for real: hubbub from the example's config file, the app under uvicorn, Chromium.

hubbub is started as the example's README says (`--config examples/ai_stream/hubbub.toml`, from
the repository root; only the ports differ), the app with `EXAMPLE_HUBBUB` pointing at it. The page
is loaded through a proxy (tests/noupgrade_proxy.py) that the test cuts while the browser is offline
(Chromium's offline mode alone leaves an open event stream running). The page asks a question;
while the answer streams in, the browser goes offline, comes back, and the page is reloaded: the
text the page ends with is exactly the answer the app generated, with no token missed or repeated
(the page counts both). Read with plain `EventSource` and with hubbub.js, each through a proxy that
passes WebSockets and through one that refuses them (where hubbub.js falls back to SSE).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import free_port, wait_port
from tests.e2e.test_chat_page import browser as browser  # Debian's chromium, with ARGS
from tests.e2e.test_fastapi_example import _require_fastapi
from tests.noupgrade_proxy import NoUpgradeProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
ROOT = Path(__file__).resolve().parents[2]
WAIT = 30_000
"""Milliseconds the page may take to reach a state (a loaded 2-core machine)."""


@dataclass
class Example:
    """The running example: the page's origin (the proxy's in front of hubbub), the app's URL, the proxy."""

    page: str
    app: str
    proxy: NoUpgradeProxy
    logs: list[Any]

    def log(self) -> str:
        text = []
        for log in self.logs:
            log.seek(0)
            text.append(log.read().decode())
        return "\n".join(text)


@pytest.fixture(params=["direct", "websockets-refused"])
async def example(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Example]:
    _require_fastapi()
    key = secrets.token_urlsafe(24)
    hub_port, app_port = free_port(), free_port()
    app = f"http://127.0.0.1:{app_port}"
    env = {**os.environ, "HUBBUB_API_KEY": key, "EXAMPLE_TOKEN_DELAY": "0.1"}
    logs = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]  # noqa: SIM115 - closed below
    serve = [sys.executable, "-m", "hubbub", "serve", "--config", str(ROOT / "examples" / "ai_stream" / "hubbub.toml")]
    serve += ["--port", str(hub_port), "--log-level", "warning"]
    hub = subprocess.Popen(serve, cwd=ROOT, env=env, stderr=logs[0])
    proxy: NoUpgradeProxy | None = None
    app_proc: subprocess.Popen[bytes] | None = None
    try:
        await _started(hub, hub_port, logs[0])
        # the page's network: a proxy the test cuts while offline (Chromium's offline mode ends new
        # requests and WebSockets, but an open event stream goes on), refusing WebSockets or not
        proxy = await NoUpgradeProxy(hub_port, upgrades=request.param == "direct").start()
        origin = f"http://127.0.0.1:{proxy.port}"
        command = [sys.executable, "-m", "uvicorn", "examples.ai_stream.app:app", "--port", str(app_port)]
        app_env = {**env, "EXAMPLE_HUBBUB": f"http://127.0.0.1:{hub_port}", "EXAMPLE_PAGE_ORIGIN": origin}
        app_proc = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=app_env, stderr=logs[1])
        await _started(app_proc, app_port, logs[1])
        yield Example(origin, app, proxy, logs)
    finally:
        if app_proc is not None:
            app_proc.terminate()
            app_proc.wait(10)
        if proxy is not None:
            await proxy.stop()
        hub.terminate()
        hub.wait(10)
        for log in logs:
            log.close()


async def _started(proc: subprocess.Popen[bytes], port: int, log: Any) -> None:
    """Wait until `proc` listens on `port`; fail with its output if it exits first or takes 30 s."""
    for _ in range(60):
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"exited with {proc.returncode}: {log.read().decode()}")
        try:
            await wait_port(port, timeout=0.5)
            return
        except AssertionError:
            continue
    raise AssertionError(f"nothing listens on {port} after 30 s")


STATE = "JSON.parse(sessionStorage.getItem('ai_stream.answer'))"


async def _answer(browser: Any, example: Example, via: str, viewport: dict[str, int]) -> None:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{example.page}/?app={example.app}")
    await page.check(f"input[name=via][value={via}]")
    await page.fill("#question", "How does hubbub resume a stream?")
    await page.click("#send")
    await page.wait_for_function(f"{STATE}?.next >= 8", timeout=WAIT)
    await context.set_offline(True)  # the network drops mid-answer
    example.proxy.cut()
    await page.wait_for_function("window.answerState.drops >= 1", timeout=WAIT)
    await asyncio.sleep(1)
    await context.set_offline(False)
    await page.wait_for_function(f"{STATE}?.next >= 16", timeout=WAIT)
    await page.reload()  # and the reader reloads, mid-answer still or after the end
    await page.wait_for_function("document.querySelector('#status').dataset.state === 'done'", timeout=WAIT)
    state = await page.evaluate(STATE)
    async with httpx.AsyncClient() as http:
        made = (await http.get(f"{example.app}/answers/{state['id']}")).json()
    assert made["done"] and "failed" not in made, example.log()
    assert state["repeats"] == 0 and state["gaps"] == 0
    assert state["text"] == made["text"] == await page.inner_text("#answer")
    assert len(made["text"].split()) >= 40
    if via == "hubbub":
        # the answer's room is server-only: a reader's own message into it is refused
        refused = await page.evaluate(
            """async (room) => {
              const { Hubbub } = await import("/hubbub.js");
              const hub = new Hubbub({ name: "mallory" });
              await hub.connect();
              await hub.join(room);
              const code = await hub.send(room, { i: 0, token: "forged" }).then(() => null, (e) => e.code);
              hub.close();
              return code;
            }""",
            state["room"],
        )
        assert refused == "forbidden"
    assert errors == []
    await context.close()


async def test_an_answer_over_event_source_survives_offline_and_a_reload(browser: Any, example: Example) -> None:
    await _answer(browser, example, "sse", {"width": 1280, "height": 800})


async def test_an_answer_over_hubbub_js_survives_offline_and_a_reload(browser: Any, example: Example) -> None:
    await _answer(browser, example, "hubbub", {"width": 390, "height": 844})
