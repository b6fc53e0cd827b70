"""Feedback votes, a channel's recent numbers (``/tutor stats``) and a student's own page
(the Home tab).

A mixin of ``SqlStore``, like ``store.agent``: statements built once per dialect, each
operation one statement (its own transaction). Every query starts from an index:

- a vote: the turn by its primary key, the vote by ``unique(turn_id, user_id)``;
- a channel: its threads by ``unique(team, channel, thread_ts)`` (a prefix), their turns by
  ``turns_thread_order`` / ``unique(thread_id, message_ts)``, quizzes by
  ``unique(thread_id, call_id)``, votes by ``unique(turn_id, user_id)``;
- a student: ``threads_started_by(team, started_by, id)`` and ``quizzes_student(student_id,
  id)``, newest first, so only the rows shown are read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bot.domain import QuizStatus, ThreadKey, TurnKind, TurnStatus
from store._rows import quiz_from_row
from store.base import ChannelActivity, RecordedVote, StartedThread, StudentPage
from store.dialects import Database, db_now, insert_for
from store.schema import Timestamp, feedback_votes, quizzes, threads, turns

_b = sa.bindparam

# The values in ``feedback_votes.value``.
GOOD, BAD = "good", "bad"

FAILED_STATUSES = (TurnStatus.FAILED.value, TurnStatus.EXPIRED.value)
# A quiz the student got to see (an invalid one was only an error output to the model).
SHOWN_QUIZ = sa.and_(
    quizzes.c.status != QuizStatus.INVALID.value, quizzes.c.message_ts.is_not(None)
)
# Answers the model received: submitted as tool output, or resent as a message (expired).
SUBMITTED_QUIZ = (QuizStatus.SUBMITTED.value, QuizStatus.EXPIRED.value)


@dataclass(frozen=True, slots=True)
class FeedbackStatements:
    vote_target: sa.Select[Any]
    upsert_vote: sa.Insert
    channel_activity: sa.Select[Any]
    started_threads: sa.Select[Any]
    student_quizzes: sa.Select[Any]


def _in_channel() -> sa.ColumnElement[bool]:
    return sa.and_(threads.c.team == _b("team"), threads.c.channel == _b("channel"))


def _count(join: Any, *where: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
    return sa.select(sa.func.count()).select_from(join).where(*where).scalar_subquery()


@functools.cache
def feedback_statements(dialect: str) -> FeedbackStatements:
    since = _b("since", type_=Timestamp)
    turns_in_channel = turns.join(threads, threads.c.id == turns.c.thread_id)
    quizzes_in_channel = quizzes.join(threads, threads.c.id == quizzes.c.thread_id)
    votes_in_channel = feedback_votes.join(turns, turns.c.id == feedback_votes.c.turn_id).join(
        threads, threads.c.id == turns.c.thread_id
    )

    def votes(value: str) -> sa.ScalarSelect[Any]:
        return _count(
            votes_in_channel,
            _in_channel(),
            feedback_votes.c.value == value,
            feedback_votes.c.voted_at >= since,
        )

    channel_activity = sa.select(
        _count(
            turns_in_channel,
            _in_channel(),
            turns.c.kind == TurnKind.MESSAGE.value,
            turns.c.status == TurnStatus.COMPLETED.value,
            turns.c.created_at >= since,
        ).label("questions_answered"),
        _count(
            turns_in_channel,
            _in_channel(),
            turns.c.status.in_(FAILED_STATUSES),
            turns.c.created_at >= since,
        ).label("failed_answers"),
        _count(quizzes_in_channel, _in_channel(), SHOWN_QUIZ, quizzes.c.created_at >= since).label(
            "quizzes_posted"
        ),
        _count(
            quizzes_in_channel,
            _in_channel(),
            SHOWN_QUIZ,
            quizzes.c.status.in_(SUBMITTED_QUIZ),
            quizzes.c.created_at >= since,
        ).label("quizzes_submitted"),
        votes(GOOD).label("thumbs_up"),
        votes(BAD).label("thumbs_down"),
    )

    # The thread's first question (its title) and its latest message: each one probe of
    # unique(thread_id, message_ts).
    first_turn = turns.alias("first_turn")
    last_turn = turns.alias("last_turn")
    title = (
        sa.select(first_turn.c.text)
        .where(first_turn.c.thread_id == threads.c.id, first_turn.c.kind == TurnKind.MESSAGE.value)
        .order_by(first_turn.c.message_ts)
        .limit(1)
        .scalar_subquery()
    )
    last_activity = (
        sa.select(sa.func.max(last_turn.c.created_at))
        .where(last_turn.c.thread_id == threads.c.id)
        .scalar_subquery()
    )
    started_threads = (
        sa.select(
            threads.c.channel,
            threads.c.thread_ts,
            threads.c.created_at,
            title.label("title"),
            sa.type_coerce(last_activity, Timestamp).label("last_activity"),
        )
        .where(threads.c.team == _b("team"), threads.c.started_by == _b("user_id"))
        .order_by(threads.c.id.desc())
        .limit(_b("limit"))
    )
    student_quizzes = (
        sa.select(quizzes)
        .join(threads, threads.c.id == quizzes.c.thread_id)
        .where(
            quizzes.c.student_id == _b("user_id"),
            threads.c.team == _b("team"),
            SHOWN_QUIZ,
        )
        .order_by(quizzes.c.id.desc())
        .limit(_b("limit"))
    )

    vote_target = (
        sa.select(turns.c.id, turns.c.kind, turns.c.parent_turn_id, feedback_votes.c.value)
        .join(threads, threads.c.id == turns.c.thread_id)
        .outerjoin(
            feedback_votes,
            sa.and_(
                feedback_votes.c.turn_id == turns.c.id,
                feedback_votes.c.user_id == _b("user_id"),
            ),
        )
        .where(turns.c.id == _b("turn_id"), _in_channel())
    )
    insert = insert_for(dialect)
    upsert = insert(feedback_votes).values(
        turn_id=_b("turn_id"), user_id=_b("user_id"), value=_b("value"), voted_at=db_now()
    )
    upsert_vote = upsert.on_conflict_do_update(
        index_elements=["turn_id", "user_id"],
        set_={"value": upsert.excluded.value, "voted_at": upsert.excluded.voted_at},
        # The same vote again (a double click) changes nothing and returns no row.
        where=feedback_votes.c.value != upsert.excluded.value,
    ).returning(feedback_votes.c.id)
    return FeedbackStatements(
        vote_target=vote_target,
        upsert_vote=upsert_vote,
        channel_activity=channel_activity,
        started_threads=started_threads,
        student_quizzes=student_quizzes,
    )


class FeedbackRecords:
    """``SqlStore``'s feedback, stats and Home-page operations."""

    if TYPE_CHECKING:  # provided by SqlStore

        @property
        def database(self) -> Database: ...

        async def _read(
            self, action: str, statement: sa.Executable, params: Mapping[str, Any]
        ) -> Sequence[sa.Row[Any]]: ...

        async def _write(
            self, action: str, statement: sa.Executable, params: Mapping[str, Any]
        ) -> Sequence[sa.Row[Any]]: ...

    def _feedback_sql(self) -> FeedbackStatements:
        return feedback_statements(self.database.dialect)

    async def record_vote(
        self, team: str, channel: str, turn_id: int, user_id: str, *, helpful: bool
    ) -> RecordedVote | None:
        """``user_id``'s 👍 (``helpful``) or 👎 on turn ``turn_id`` of ``channel``: one vote
        per user per answer, the latest wins. None when the channel has no such turn."""
        where = {"team": team, "channel": channel, "turn_id": turn_id, "user_id": user_id}
        rows = await self._read("record_vote", self._feedback_sql().vote_target, where)
        if not rows:
            return None
        target = rows[0]
        written = await self._write(
            "record_vote",
            self._feedback_sql().upsert_vote,
            {"turn_id": turn_id, "user_id": user_id, "value": GOOD if helpful else BAD},
        )
        return RecordedVote(
            turn_id=turn_id,
            changed=bool(written),
            previous=None if target.value is None else target.value == GOOD,
            kind=TurnKind(target.kind),
            parent_turn_id=target.parent_turn_id,
        )

    async def channel_activity(self, team: str, channel: str, since: datetime) -> ChannelActivity:
        """What happened in a channel since ``since``: questions answered (message turns
        completed), failed answers (turns failed or expired), quizzes shown and submitted,
        and the 👍 / 👎 cast, all counted in one statement."""
        rows = await self._read(
            "channel_activity",
            self._feedback_sql().channel_activity,
            {"team": team, "channel": channel, "since": since},
        )
        row = rows[0]
        return ChannelActivity(
            questions_answered=row.questions_answered,
            failed_answers=row.failed_answers,
            quizzes_posted=row.quizzes_posted,
            quizzes_submitted=row.quizzes_submitted,
            thumbs_up=row.thumbs_up,
            thumbs_down=row.thumbs_down,
        )

    async def student_page(self, team: str, user_id: str, *, limit: int = 20) -> StudentPage:
        """The latest ``limit`` conversations ``user_id`` started in ``team`` and the latest
        ``limit`` quizzes they were given there, newest first."""
        params = {"team": team, "user_id": user_id, "limit": limit}
        sql = self._feedback_sql()
        thread_rows = await self._read("student_page", sql.started_threads, params)
        quiz_rows = await self._read("student_page", sql.student_quizzes, params)
        return StudentPage(
            conversations=[
                StartedThread(
                    key=ThreadKey(team=team, channel=row.channel, thread_ts=row.thread_ts),
                    title=row.title or "",
                    last_activity=row.last_activity or row.created_at,
                )
                for row in thread_rows
            ],
            quizzes=[quiz_from_row(row) for row in quiz_rows],
        )
