"""Application hooks on a connection's life: `on_connect`, `on_disconnect`, `authorize_join`.

Registered with the hub's decorators, plain or `async def`. `on_connect` may refuse with a close
code or `Refused`; `authorize_join` answers True, False (`forbidden`) or raises `EventError`;
any other exception is logged (1011 for `on_connect`). With no hook registered they cost one
attribute test. When each runs: docs/apps.md and docs/topics/node.md.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hubbub.core.tasks import TaskOwner
from hubbub.errors import EventError, Refused
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.session import valid_peer_close_code

if TYPE_CHECKING:
    from hubbub.core.connection import Connection

log = logging.getLogger("hubbub.core.hooks")

ConnectHook = Callable[["Connection"], Any]
"""`(conn) -> None | close code`, or a coroutine function with that result."""
DisconnectHook = Callable[["Connection", int], Any]
"""`(conn, close code) -> None`, or a coroutine function."""
JoinHook = Callable[["Connection", str], Any]
"""`(conn, room) -> bool`, or a coroutine function with that result."""


class Hooks:
    """The registered hooks of one hub (at most one of each kind) and how each is run."""

    def __init__(self, tasks: TaskOwner) -> None:
        self._tasks = tasks
        self.on_connect: ConnectHook | None = None
        self.on_disconnect: DisconnectHook | None = None
        self.authorize_join: JoinHook | None = None

    # ---- on_connect -------------------------------------------------------------

    def connected(self, conn: Connection) -> None:
        """Run `on_connect` for a connection just registered (the caller tested it is set)."""
        assert self.on_connect is not None
        try:
            result = self.on_connect(conn)
        except Exception as exc:
            _refuse(conn, exc)
            return
        if inspect.isawaitable(result):
            conn._run_first(_awaited(conn, result))
        else:
            _apply(conn, result)

    # ---- on_disconnect ----------------------------------------------------------

    def disconnected(self, conn: Connection, code: int) -> None:
        """Run `on_disconnect`; an async hook becomes a task of the hub (failures are logged)."""
        assert self.on_disconnect is not None
        try:
            result = self.on_disconnect(conn, code)
        except Exception:
            log.exception("hook.on_disconnect_failed", extra={"conn": conn.id})
            return
        if inspect.isawaitable(result):
            self._tasks.spawn(_as_coroutine(result))

    # ---- authorize_join ---------------------------------------------------------

    async def authorize(self, conn: Connection, room: str) -> None:
        """`forbidden` unless `authorize_join` says yes (an `EventError` it raises goes through)."""
        assert self.authorize_join is not None
        result = self.authorize_join(conn, room)
        if inspect.isawaitable(result):
            result = await result
        if result is not True:
            raise EventError(ErrorCode.FORBIDDEN, f"not allowed to join room {room!r}")


async def _as_coroutine(awaitable: Awaitable[Any]) -> None:
    await awaitable


async def _awaited(conn: Connection, pending: Awaitable[Any]) -> None:
    """The async `on_connect`, awaited ahead of the client's messages; CancelledError goes through."""
    try:
        result = await pending
    except Exception as exc:
        _refuse(conn, exc)
        return
    _apply(conn, result)


def _apply(conn: Connection, result: Any) -> None:
    """What `on_connect` returned: None lets the connection in, a close code closes it."""
    if result is None:
        return
    if isinstance(result, int) and not isinstance(result, bool) and valid_peer_close_code(result):
        conn.close(result, "refused")
        return
    log.error("hook.on_connect_bad_result", extra={"conn": conn.id, "result": repr(result)[:100]})
    conn.close(CloseCode.INTERNAL_ERROR, "on_connect failed")


def _refuse(conn: Connection, exc: Exception) -> None:
    """`Refused` closes with its code; anything else is a bug in the hook: logged, 1011."""
    if isinstance(exc, Refused) and valid_peer_close_code(exc.code):
        conn.close(exc.code, exc.reason)
        return
    log.error("hook.on_connect_failed", exc_info=exc, extra={"conn": conn.id})
    conn.close(CloseCode.INTERNAL_ERROR, "on_connect failed")
