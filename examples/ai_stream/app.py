"""A FastAPI app that streams an answer's tokens to browsers through hubbub, one room per answer.

Run from the repository root (the README beside this file has the whole recipe):

    uvicorn examples.ai_stream.app:app --port 8000

* `POST /ask {"question": ...}`: makes an answer `id`, answers at once with `{"id", "room"}` (the
  room is `answer:<id>`), and streams the answer into that room in the background: one message
  `{"i": n, "token": "..."}` per token, published with **`hubbub.client.api`** (the server API,
  `--api-key`), then `{"i": n, "done": true}`. Browsers only read the room: it is server-only.
* `GET /answers/{id}`: the app's own record of the answer so far (`{"question", "text", "done"}`).
* Browsers cannot write into an answer: the config file's namespace (`[[namespaces]] pattern =
  "answer:*"`, `publish = "server"`) makes hubbub refuse a client's message there (`forbidden`).

**The tokens come from a stand-in for a model**: `model_tokens` below makes a deterministic answer
from the question and yields it word by word, with a pause between tokens. It is the ONE function a
team replaces with its model's streaming call (an async generator of text pieces); nothing else
changes.

The page (`static/index.html`) is served by hubbub (`--static examples/ai_stream/static`), so that
`/sse` and `/hubbub.js` are on the page's own origin; it calls this app across origins (CORS, below).

Configuration, from the environment: `HUBBUB_API_KEY` (the key `hubbub serve` is given),
`EXAMPLE_HUBBUB` (the hubbub node; default `http://127.0.0.1:8001`), `EXAMPLE_PAGE_ORIGIN` (the
page's origin, allowed to post questions; default `EXAMPLE_HUBBUB`, which serves it),
`EXAMPLE_TOKEN_DELAY` (seconds between tokens; default 0.05).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hubbub.client.api import ApiError, AsyncApiClient

log = logging.getLogger("example")
MAX_ANSWERS = 1000
"""Answers the app remembers (the oldest is forgotten first): an example's bound, not a store."""


@dataclass(frozen=True, slots=True)
class Config:
    """Where hubbub is and the key of its server API."""

    hubbub: str
    api_key: str
    page_origin: str
    """The origin the page is served from, allowed to post questions (CORS): hubbub's, unless a
    proxy in front of hubbub serves it under another name."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The configuration from the environment; a missing key ends the process with one line."""
        if not env.get("HUBBUB_API_KEY"):
            sys.exit("examples.ai_stream: set HUBBUB_API_KEY (the value hubbub serve is given)")
        hubbub = env.get("EXAMPLE_HUBBUB", "http://127.0.0.1:8001").rstrip("/")
        return cls(
            hubbub=hubbub,
            api_key=env["HUBBUB_API_KEY"].split(",")[0],
            page_origin=env.get("EXAMPLE_PAGE_ORIGIN", hubbub).rstrip("/"),
        )


# ---- the model: the ONE function to replace ---------------------------------------------------

TEXT = (
    "hubbub keeps every room's recent messages with an offset, so a reader that drops out asks for"
    " what came after the last offset it saw, and gets exactly that: nothing lost, nothing twice."
    " Over Server-Sent Events the offset travels as the event id, which the browser sends back by"
    " itself when it reconnects; a page that reloads keeps it in sessionStorage and passes it as"
    " last_event_id. The same works over WebSockets with hubbub.js, which re-joins with since."
)
WORDS = TEXT.split()
STARTS = [0] + [n + 1 for n, word in enumerate(WORDS[:-1]) if word.endswith(".")]
"""Where the stand-in's sentences start: an answer starts with one."""


TOKEN_DELAY = float(os.environ.get("EXAMPLE_TOKEN_DELAY", "0.05"))
"""Seconds the stand-in waits between tokens (a real model sets its own pace)."""


async def model_tokens(question: str) -> AsyncIterator[str]:
    """A STAND-IN FOR A MODEL: replace this function with your model's streaming call.

    It yields the answer's pieces of text as they come (with an OpenAI-style client, for example,
    `async for chunk in await client.chat.completions.create(..., stream=True): yield
    chunk.choices[0].delta.content or ""`). This one is not a model: it picks 40 to 60 words of a
    fixed text, deterministically from the question, and yields them one by one with `TOKEN_DELAY`
    seconds between them, so that the page has something to show growing.
    """
    seed = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big")
    count = 40 + seed % 21
    start = STARTS[seed % len(STARTS)]
    for n in range(count):
        word = WORDS[(start + n) % len(WORDS)]
        yield word if n == 0 else " " + word
        await asyncio.sleep(TOKEN_DELAY)


# ---- the app ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """One answer: what was asked, the tokens so far, and whether the stream has ended."""

    question: str
    tokens: list[str] = field(default_factory=list)
    done: bool = False
    failed: str = ""


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=2000)


ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def create_app(config: Config) -> FastAPI:
    """The example app, publishing to the hubbub node of `config`."""
    answers: dict[str, Answer] = {}
    tasks: set[asyncio.Task[None]] = set()
    hub: dict[str, AsyncApiClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one API client for the app's life; the streams it runs are cancelled and awaited at the end
        async with AsyncApiClient(config.hubbub, config.api_key) as api:
            hub["api"] = api
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(title="hubbub AI answer stream example", lifespan=lifespan)
    # the page comes from hubbub's origin (its /sse and /hubbub.js are then the page's own) and posts here
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[config.page_origin],
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
    )

    async def stream(answer_id: str, answer: Answer) -> None:
        """Publish the model's tokens into `answer:<id>`, one message each, then the end."""
        room = f"answer:{answer_id}"
        api = hub["api"]
        try:
            async for token in model_tokens(answer.question):
                await api.publish(room, {"i": len(answer.tokens), "token": token}, from_="ai")
                answer.tokens.append(token)
            await api.publish(room, {"i": len(answer.tokens), "done": True}, from_="ai")
        except (ApiError, OSError) as error:
            # hubbub unreachable or refusing: the answer ends here, and the page is told by GET /answers
            answer.failed = str(error)
            log.warning("answer.failed", extra={"answer": answer_id, "error": str(error)})
        finally:
            answer.done = True

    @app.post("/ask")
    async def ask(question: Question) -> JSONResponse:
        answer_id = secrets.token_urlsafe(12)
        answer = Answer(question.question)
        while len(answers) >= MAX_ANSWERS:
            answers.pop(next(iter(answers)))
        answers[answer_id] = answer
        task = asyncio.create_task(stream(answer_id, answer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse({"id": answer_id, "room": f"answer:{answer_id}"})

    @app.get("/answers/{answer_id}")
    async def get_answer(answer_id: str) -> JSONResponse:
        answer = answers.get(answer_id) if ROOM_ID.match(answer_id) else None
        if answer is None:
            return JSONResponse({"error": "no such answer"}, status_code=404)
        body = {"question": answer.question, "text": "".join(answer.tokens), "done": answer.done}
        if answer.failed:
            body["failed"] = answer.failed
        return JSONResponse(body)

    return app


def __getattr__(name: str) -> FastAPI:
    """`uvicorn examples.ai_stream.app:app`: the app, configured from the environment when first asked for."""
    if name == "app":
        logging.basicConfig(level=logging.INFO, format="example: %(message)s")
        return create_app(Config.from_env(os.environ))
    raise AttributeError(name)
