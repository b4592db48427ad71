"""Step 4: events, routed to a handler by type (the Go tutorial's event.go and routeEvent).

Step 3's manager and clients, now speaking the tutorial's dialect: every message is an event
`{"type": T, "payload": P}`, and the manager maps each type to its handler (`setupEventHandlers`):

    send_message {"message": M, "from": F}  ->  new_message {"message", "from", "sent"} to the room
    change_room {"name": R}                  ->  later messages go to and come from room R

A client starts in `general`. An event the manager cannot take gets an `error` event with a code
(hubbub's codes: bad_json, bad_envelope, unknown_type, bad_payload) and the connection stays open.

    python -m examples.learn.tutorial.step4_events --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from examples.learn.tutorial.step3_egress import Client, Manager


class Refused(Exception):
    """A handler's "no": the client gets an `error` event with this code, and stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class EventClient(Client):
    room = "general"

    async def read_messages(self) -> None:
        try:
            async for text in self.ws:
                assert isinstance(self.manager, EventManager)
                self.manager.route_event(self, str(text))
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            self.done.set()


class EventManager(Manager):
    client_type = EventClient

    def __init__(self, egress: int) -> None:
        super().__init__(egress)
        self.handlers: dict[str, Callable[[EventClient, dict[str, Any]], None]] = {
            "send_message": self.send_message,
            "change_room": self.change_room,
        }

    def route_event(self, client: EventClient, text: str) -> None:
        """The tutorial's routeEvent: decode, look the handler up by type, run it; a refusal is an `error`."""
        try:
            try:
                event = json.loads(text)
            except ValueError:
                raise Refused("bad_json", "the message is not JSON") from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise Refused("bad_envelope", "an event is {type, payload}")
            if not isinstance(payload := event.get("payload"), dict):
                raise Refused("bad_envelope", "the payload must be an object")
            if (handler := self.handlers.get(event["type"])) is None:
                raise Refused("unknown_type", f"no handler for {event['type']!r}")  # ErrEventNotSupported
            handler(client, payload)
        except Refused as no:
            client.send(json.dumps({"type": "error", "payload": {"code": no.code, "message": no.message}}))

    def sender_of(self, client: EventClient, payload: dict[str, Any]) -> str:
        """Who a message is from: what the client says (step 6 says who logged in instead)."""
        sender = payload.get("from", "anonymous")
        if not isinstance(sender, str) or not 1 <= len(sender) <= 64:
            raise Refused("bad_payload", "from must be a name of 1 to 64 characters")
        return sender

    def send_message(self, client: EventClient, payload: dict[str, Any]) -> None:
        if not isinstance(message := payload.get("message"), str):
            raise Refused("bad_payload", "message must be a string")
        sent = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        new = {"message": message, "from": self.sender_of(client, payload), "sent": sent}
        text = json.dumps({"type": "new_message", "payload": new})  # encoded once, for everyone
        for other in list(self.clients):
            if isinstance(other, EventClient) and other.room == client.room:
                other.send(text)

    def change_room(self, client: EventClient, payload: dict[str, Any]) -> None:
        if not isinstance(name := payload.get("name"), str) or not 1 <= len(name) <= 128:
            raise Refused("bad_payload", "name must be a room name of 1 to 128 characters")
        client.room = name


async def main(port: int) -> None:
    async with serve(EventManager(256).serve_ws, "127.0.0.1", port, compression=None):
        print(f"listening on ws://127.0.0.1:{port}/ws", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().port))
