"""Traces of turns parked on a quiz, kept open so the answers' turn continues them."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.domain import Turn
from bot.telemetry.base import TurnTrace

PARKED_TRACE_TTL = 3600.0


class ParkedTraces:
    """Traces of turns waiting for a quiz, so the answers' turn continues the same trace.

    In memory: after a restart (or in another process) the continuation starts its own
    trace, linked by its ``parent_turn_id`` attribute. Unanswered quizzes end their trace
    "Indeterminate" when the thread moves on or after ``PARKED_TRACE_TTL``.
    """

    def __init__(self) -> None:
        self._traces: dict[int, tuple[int, float, TurnTrace]] = {}

    def park(self, turn: Turn, trace: TurnTrace) -> None:
        self._traces[turn.id] = (turn.thread_id, time.monotonic(), trace)

    def resume(self, turn_id: int) -> TurnTrace | None:
        entry = self._traces.pop(turn_id, None)
        return entry[2] if entry else None

    def end_thread(self, thread_id: int) -> None:
        self._end(lambda t, _: t == thread_id)

    def end_stale(self) -> None:
        cutoff = time.monotonic() - PARKED_TRACE_TTL
        self._end(lambda _, parked_at: parked_at < cutoff)

    def end_all(self) -> None:
        self._end(lambda _, __: True)

    def _end(self, which: Callable[[int, float], bool]) -> None:
        for turn_id, (thread_id, parked_at, trace) in list(self._traces.items()):
            if which(thread_id, parked_at):
                del self._traces[turn_id]
                trace.end("Indeterminate")
