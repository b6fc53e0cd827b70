"""Run a blocking call on a throwaway daemon thread and await it with a cap."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def call_with_cap(fn: Callable[[], T], cap: float, name: str) -> tuple[bool, T | None]:
    """Call ``fn`` on a new daemon thread and wait for it at most ``cap`` seconds.

    Returns ``(finished, result)``; on timeout the thread is left to finish on its own.
    Not ``asyncio.to_thread``: the default executor's threads are joined at interpreter
    exit, so an export stuck on an unreachable backend would hold up the process.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        future.set_running_or_notify_cancel()  # so a timed-out wait cannot cancel it
        try:
            future.set_result(fn())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, cap))
    except TimeoutError:
        return False, None
    return True, result
