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
    """A trace for one turn (a run, including its quiz continuations).

    Attribute keys: plain names (``run_id``) are recorded as ``tutorbot.<name>``,
    dotted ones (``gen_ai.usage.input_tokens``) as given, ``model`` as
    ``gen_ai.request.model``. Message text goes only under content keys (``input``,
    ``output``, ``text``, ``prompt``, ``instructions``, …), which are dropped when the
    telemetry was created with ``redact_content``.
    """

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        """Add or replace one attribute of the turn's trace (ignored after ``end``)."""

    @contextmanager
    def model_call(self, name: str, **attributes: Any) -> Iterator[None]:
        """A child span of this turn around one call to the model service.

        ``name`` is the operation (``responses.create``, ``start_run``); an exception
        from the body marks the span failed and propagates.
        """
        yield

    def end(self, outcome: Outcome) -> None:
        """End the trace with ``outcome``; never blocks the event loop. The first call wins."""


class Telemetry(Protocol):
    """Where turns are traced; one per process, from ``bot.telemetry.create_telemetry``."""

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
        """Start the trace of one turn; ``text`` is the user's message (content)."""
        ...

    def record_feedback(
        self,
        *,
        turn_id: int,
        trace_turn_id: int,
        helpful: bool,
        user: str,
        team: str,
        channel: str,
    ) -> None:
        """A student's 👍 (``helpful``) or 👎 on the answer of ``turn_id``, whose trace was
        started for ``trace_turn_id`` (a quiz's answers continue their quiz's trace): a
        span in that trace while it is open, else a small span of its own, linked to the
        trace when this process still knows it, and naming the turn either way."""

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

    def record_feedback(
        self,
        *,
        turn_id: int,
        trace_turn_id: int,
        helpful: bool,
        user: str,
        team: str,
        channel: str,
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None
