"""The telemetry interface the conversation core uses: one trace per turn.

``NoopTelemetry`` is what runs when AgentOps is off; ``bot.telemetry.create_telemetry``
picks the implementation (and imports agentops only when a key is set).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

Outcome = Literal["Success", "Fail", "Indeterminate"]


class TurnTrace(Protocol):
    """A trace for one turn (a run, including its quiz continuations)."""

    def set_attribute(self, key: str, value: str | int | float | bool) -> None: ...

    @contextmanager
    def model_call(self, name: str, **attributes: Any) -> Iterator[None]:
        """A child span around one call to the model service (e.g. ``responses.create``)."""
        yield

    def end(self, outcome: Outcome) -> None:
        """End the trace; never blocks the event loop. Idempotent."""


class Telemetry(Protocol):
    def start_turn(
        self,
        *,
        runtime: str,
        team: str,
        channel: str,
        thread_key: str,
        turn_id: int,
        text: str | None = None,
    ) -> TurnTrace: ...

    async def aclose(self) -> None:
        """Flush what is pending (bounded by a few seconds) and stop."""


class NoopTurnTrace:
    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        return None

    @contextmanager
    def model_call(self, name: str, **attributes: Any) -> Iterator[None]:
        yield

    def end(self, outcome: Outcome) -> None:
        return None


class NoopTelemetry:
    def start_turn(
        self,
        *,
        runtime: str,
        team: str,
        channel: str,
        thread_key: str,
        turn_id: int,
        text: str | None = None,
    ) -> TurnTrace:
        return NoopTurnTrace()

    async def aclose(self) -> None:
        return None
