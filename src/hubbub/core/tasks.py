"""Background work with an owner that waits for it.

Every task hubbub starts in the background (a presence update after a
disconnect, an unsubscribe, the heartbeat sweep) belongs to a `TaskOwner`,
and the owner's `close` is awaited at shutdown: it lets the work finish for a
bounded time, then cancels what is left and waits for that too, so nothing
runs on after the hub is gone and no task is garbage-collected mid-flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("hubbub.core.tasks")
T = TypeVar("T")


class TaskOwner:
    """A set of running tasks, each kept until it ends, all awaited by `close`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, T], *, report: bool = True) -> asyncio.Task[T]:
        """Run `work` in a task owned here.

        With `report`, a failure is logged (it would otherwise be lost); without
        it, the caller takes the outcome from the task itself (a publish whose
        result answers a request, a subscription joiners await).
        """
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done if report else self._tasks.discard)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task.failed", exc_info=task.exception(), extra={"owner": self.name})

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, grace: float = 0.0) -> None:
        """Let running work finish for up to `grace` seconds, then cancel the rest and wait for it."""
        if self._tasks and grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        while self._tasks:
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
