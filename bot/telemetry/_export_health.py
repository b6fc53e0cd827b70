"""One log line per telemetry outage, not one per failed export."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("bot.telemetry")


class ExportHealth:
    """Tracks whether sending to AgentOps works; thread-safe (exports run on OTel's thread).

    The first failure logs one warning; later failures are only counted until a
    success, which logs one info line and re-arms the warning.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._lock = threading.Lock()
        self._failing = False
        self.failures = 0
        self.successes = 0

    @property
    def failing(self) -> bool:
        return self._failing

    def record_failure(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            if self._failing:
                return
            self._failing = True
        self._log.warning(
            "AgentOps telemetry is failing: %s. Turns are not affected; "
            "traces may be lost until it recovers.",
            reason,
        )

    def record_success(self) -> None:
        with self._lock:
            self.successes += 1
            recovered, self._failing = self._failing, False
        if recovered:
            self._log.info("AgentOps telemetry recovered")
