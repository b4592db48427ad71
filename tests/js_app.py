"""A small app for the hubbub.js node tests (`--app tests.js_app:hub`): one custom request and one
custom server event, so that `request()` and app events are tested against a real server."""

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
