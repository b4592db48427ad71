"""A small app for the hubbub.js node tests (`--app tests.js_app:hub`): one custom request and one
custom server event, so that `request()` and app events are tested against a real server, and two
rpc methods for `rpc()`."""

from __future__ import annotations

from typing import Any

import msgspec

from hubbub import Connection, ErrorCode, EventError, Hub

hub = Hub()


class Shout(msgspec.Struct, frozen=True):
    """`shout {"text": T}`: answered with `{"heard": T}`, then the event `echoed` to the sender alone;
    an empty text is `forbidden` (an app's own refusal)."""

    text: str


@hub.on("shout", Shout)
def shout(payload: Shout, conn: Connection) -> dict[str, Any]:
    if not payload.text:
        raise EventError(ErrorCode.FORBIDDEN, "say something")
    conn.send("echoed", {"text": payload.text.upper()})
    conn.send("message", {"text": "an app event named like a client event"})
    return {"heard": payload.text}


@hub.rpc("add")
async def add(conn: Connection, data: Any) -> Any:
    """An in-process rpc method: `{"a": A, "b": B}` gives `A + B`; anything else is `bad_payload`."""
    if not isinstance(data, dict) or not isinstance(data.get("a"), int) or not isinstance(data.get("b"), int):
        raise EventError(ErrorCode.BAD_PAYLOAD, "add takes {a, b}, two integers")
    return data["a"] + data["b"]


@hub.rpc("vault")
def vault(conn: Connection, data: Any) -> Any:
    """An in-process rpc method that refuses everyone but `root`."""
    if conn.identity != "root":
        raise EventError(ErrorCode.FORBIDDEN, "root only")
    return "opened"
