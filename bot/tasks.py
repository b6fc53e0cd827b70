"""Owned background tasks: every task is tracked, its errors logged, cancelled on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


# Loops that run as long as the process does (bot.core.workers): never "work to wait for".
LONG_LIVED = frozenset({"turn-heartbeat", "turn-sweeper"})


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background; None (and the coroutine closed) when shutting down."""
        if self._closing:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def _working(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if t.get_name() not in LONG_LIVED]

    def busy(self) -> bool:
        """Whether any task other than the long-lived loops (heartbeat, sweeper) runs."""
        return bool(self._working())

    async def wait_idle(self) -> None:
        """Return once ``busy`` is False; tasks spawned meanwhile (a thread's next turn)
        are waited for too. The tasks are not cancelled if the waiter is."""
        while running := self._working():
            await asyncio.wait(running)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking work, give running tasks ``timeout`` seconds, then cancel the rest."""
        self._closing = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)
