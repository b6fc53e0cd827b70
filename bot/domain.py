"""The domain model: what the bot remembers, independent of Slack and of the model protocol.

Assistants-world concepts are kept on purpose (thread, turn = run, tool call, tool output);
each runtime in ``bot/runtime`` maps them onto its wire protocol.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """A Slack thread: the unit of conversation. One key, one assistant thread."""

    team: str
    channel: str
    thread_ts: str

    def __str__(self) -> str:
        return f"{self.team}/{self.channel}/{self.thread_ts}"


@dataclass(slots=True)
class Thread:
    """A Slack thread and the model-side thread (``thread_…`` or ``conv_…``) it maps to."""

    id: int
    key: ThreadKey
    runtime: str
    remote_id: str | None
    created_at: datetime
    updated_at: datetime
    # Who asked in this thread first; quiz answers are accepted from this person only.
    started_by: str | None = None


class TurnKind(enum.StrEnum):
    MESSAGE = "message"  # a user's message to answer
    QUIZ_ANSWERS = "quiz_answers"  # every open quiz of a run was answered: submit the outputs


class TurnStatus(enum.StrEnum):
    QUEUED = "queued"  # recorded, waiting for its thread's worker
    RUNNING = "running"  # sent to the model service, awaiting the result
    POSTING = "posting"  # the model finished; the answer is being put into Slack
    NEEDS_TOOL_OUTPUTS = "needs_tool_outputs"  # parked: an open quiz waits for the student
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_TURN_STATUSES


_FINAL_TURN_STATUSES = frozenset(
    {TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED, TurnStatus.EXPIRED}
)


@dataclass(slots=True)
class Turn:
    """One unit of work on a thread: a run, from the Slack event that caused it to its outcome.

    ``message_ts`` is the Slack ts of the user message (or, for QUIZ_ANSWERS, a synthetic
    ``quiz:<batch>`` key); (thread, message_ts) is unique, which is how deliveries are
    deduplicated (both copies of a message map to one thread key).
    """

    id: int
    thread_id: int
    kind: TurnKind
    status: TurnStatus
    user_id: str | None
    text: str
    message_ts: str
    remote_run_id: str | None = None
    # Slack ts of the bot's "working…" message for this turn, replaced by the answer.
    status_message_ts: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    # For QUIZ_ANSWERS: the turn whose run asked for the quiz.
    parent_turn_id: int | None = None
    # Where the answer stands in Slack (``bot.slack.answer.Progress`` as JSON).
    progress: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class QuestionType(enum.StrEnum):
    MULTIPLE_CHOICE = "MULTIPLE_CHOICE"
    FREE_RESPONSE = "FREE_RESPONSE"


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    type: QuestionType
    choices: tuple[str, ...] = ()


class QuizStatus(enum.StrEnum):
    INVALID = "invalid"  # arguments failed validation; an error output was returned instead
    OPEN = "open"  # posted, collecting answers
    ANSWERED = "answered"  # every question has an answer; waiting for the sibling calls
    SUBMITTED = "submitted"  # sent to the model as tool output
    SKIPPED = "skipped"  # the student moved on before answering
    EXPIRED = "expired"  # the run could not take outputs; answers went in as a user message


@dataclass(slots=True)
class Quiz:
    """One ``display_quiz`` call of a run, and the student's answers to it."""

    id: int
    turn_id: int
    thread_id: int
    call_id: str
    title: str
    questions: list[Question]
    answers: list[str | None]
    status: QuizStatus
    channel: str
    message_ts: str | None = None
    # Where the call came from (run id / response id): outputs go back there.
    remote_run_id: str | None = None
    # Who may answer (the person whose message started the run).
    student_id: str | None = None
    # The error tool output for INVALID quizzes.
    error_output: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_complete(self) -> bool:
        return all(a is not None for a in self.answers)


@dataclass(frozen=True, slots=True)
class QuizMove:
    """A compare-and-set of one quiz's status, applied with a turn's transition."""

    quiz_id: int
    to_status: QuizStatus
    from_statuses: tuple[QuizStatus, ...]
