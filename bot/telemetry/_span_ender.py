"""A dedicated thread that ends turn traces, so nothing agentops does at a trace's end
(its span processors may upload a log file synchronously) ever runs on the event loop."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("bot.telemetry")

Job = Callable[[], None]


class SpanEnder:
    """Runs span-ending jobs in order on one daemon thread, with a bounded backlog.

    When the backlog is full, new jobs are dropped and counted in ``dropped``: a
    trace that is never ended is lost, but the caller is never held up.
    """

    def __init__(self, capacity: int = 1000, on_drop: Callable[[int], None] | None = None) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue(capacity)
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="tutorbot-trace-ender", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue ``job`` without blocking; False if it was dropped."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if self._on_drop is not None:
                self._on_drop(dropped)
            return False
        return True

    def close(self, timeout: float) -> bool:
        """Run what is queued, then stop; True if that finished within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._queue.put(None, timeout=timeout)
                except queue.Full:
                    return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:
                log.debug("ending a trace failed", exc_info=True)
