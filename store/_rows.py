"""Row -> domain conversions.

Rows are SQLAlchemy ``Row``s of the tables in ``store.schema``: JSON columns arrive decoded
and timestamps as aware UTC datetimes, on both databases (the column types see to that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.domain import (
    Question,
    QuestionType,
    Quiz,
    QuizStatus,
    Thread,
    ThreadKey,
    Turn,
    TurnKind,
    TurnStatus,
)


def questions_json(questions: Sequence[Question]) -> list[dict[str, Any]]:
    return [{"text": q.text, "type": q.type.value, "choices": list(q.choices)} for q in questions]


def _questions(value: list[dict[str, Any]]) -> list[Question]:
    return [
        Question(text=q["text"], type=QuestionType(q["type"]), choices=tuple(q["choices"]))
        for q in value
    ]


def thread_from_row(row: Any) -> Thread:
    return Thread(
        id=row.id,
        key=ThreadKey(team=row.team, channel=row.channel, thread_ts=row.thread_ts),
        runtime=row.runtime,
        remote_id=row.remote_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_by=row.started_by,
    )


def turn_from_row(row: Any) -> Turn:
    return Turn(
        id=row.id,
        thread_id=row.thread_id,
        kind=TurnKind(row.kind),
        status=TurnStatus(row.status),
        user_id=row.user_id,
        text=row.text,
        message_ts=row.message_ts,
        remote_run_id=row.remote_run_id,
        status_message_ts=row.status_message_ts,
        files=row.files,
        attempts=row.attempts,
        error=row.error,
        parent_turn_id=row.parent_turn_id,
        progress=row.progress,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def quiz_from_row(row: Any) -> Quiz:
    return Quiz(
        id=row.id,
        turn_id=row.turn_id,
        thread_id=row.thread_id,
        call_id=row.call_id,
        title=row.title,
        questions=_questions(row.questions),
        answers=row.answers,
        status=QuizStatus(row.status),
        channel=row.channel,
        message_ts=row.message_ts,
        remote_run_id=row.remote_run_id,
        student_id=row.student_id,
        error_output=row.error_output,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def ordered_subset(wanted: Sequence[int], present: Sequence[int]) -> list[int]:
    """``present`` ids in the caller's order, each once."""
    found = set(present)
    return [i for i in dict.fromkeys(wanted) if i in found]
