"""Row <-> domain conversions shared by both backends.

Rows are mappings (``sqlite3.Row`` or ``asyncpg.Record``). JSON columns arrive as text
from both drivers (SQLite TEXT, PostgreSQL JSONB without a codec); timestamps arrive as
ISO text from SQLite and as aware datetimes from asyncpg.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

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


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so SQLite can compare timestamps as strings."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def to_datetime(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _required_datetime(value: str | datetime) -> datetime:
    moment = to_datetime(value)
    assert moment is not None
    return moment


def questions_json(questions: Sequence[Question]) -> str:
    return json.dumps(
        [{"text": q.text, "type": q.type.value, "choices": list(q.choices)} for q in questions]
    )


def _questions(value: str) -> list[Question]:
    return [
        Question(text=q["text"], type=QuestionType(q["type"]), choices=tuple(q["choices"]))
        for q in json.loads(value)
    ]


def thread_from_row(row: Row) -> Thread:
    return Thread(
        id=row["id"],
        key=ThreadKey(team=row["team"], channel=row["channel"], thread_ts=row["thread_ts"]),
        runtime=row["runtime"],
        remote_id=row["remote_id"],
        created_at=_required_datetime(row["created_at"]),
        updated_at=_required_datetime(row["updated_at"]),
        started_by=row["started_by"],
    )


def turn_from_row(row: Row) -> Turn:
    return Turn(
        id=row["id"],
        thread_id=row["thread_id"],
        kind=TurnKind(row["kind"]),
        status=TurnStatus(row["status"]),
        user_id=row["user_id"],
        text=row["text"],
        message_ts=row["message_ts"],
        remote_run_id=row["remote_run_id"],
        status_message_ts=row["status_message_ts"],
        files=json.loads(row["files"]),
        attempts=row["attempts"],
        error=row["error"],
        parent_turn_id=row["parent_turn_id"],
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
    )


def quiz_from_row(row: Row) -> Quiz:
    return Quiz(
        id=row["id"],
        turn_id=row["turn_id"],
        thread_id=row["thread_id"],
        call_id=row["call_id"],
        title=row["title"],
        questions=_questions(row["questions"]),
        answers=json.loads(row["answers"]),
        status=QuizStatus(row["status"]),
        channel=row["channel"],
        message_ts=row["message_ts"],
        remote_run_id=row["remote_run_id"],
        student_id=row["student_id"],
        error_output=row["error_output"],
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
    )


def ordered_subset(wanted: Sequence[int], present: Sequence[int]) -> list[int]:
    """``present`` ids in the caller's order, each once."""
    found = set(present)
    return [i for i in dict.fromkeys(wanted) if i in found]


def turn_changes(
    *,
    status: TurnStatus | None,
    remote_run_id: str | None,
    status_message_ts: str | None,
    error: str | None,
    attempts: int | None,
) -> dict[str, Any]:
    """The columns ``update_turn`` sets: the given fields only (None leaves a field as is)."""
    changes: dict[str, Any] = {
        "status": status.value if status is not None else None,
        "remote_run_id": remote_run_id,
        "status_message_ts": status_message_ts,
        "error": error,
        "attempts": attempts,
    }
    return {name: value for name, value in changes.items() if value is not None}
