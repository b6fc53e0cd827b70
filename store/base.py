"""The persistence interface. Only ``store/`` contains SQL; everything above speaks this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bot.domain import (
    Question,
    Quiz,
    QuizStatus,
    Thread,
    ThreadKey,
    Turn,
    TurnKind,
    TurnStatus,
)


class StoreError(Exception):
    """A persistence failure that is not the caller's fault (connection, schema)."""


class Store(Protocol):
    """Async persistence for threads, turns, quizzes, files and settings.

    Implementations: ``SqliteStore`` (aiosqlite, WAL, busy timeout) and ``PostgresStore``
    (asyncpg). Both apply versioned migrations in ``open()``.
    """

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    # -- threads -------------------------------------------------------------------------

    async def get_thread(self, key: ThreadKey) -> Thread | None: ...

    async def get_thread_by_id(self, thread_id: int) -> Thread | None: ...

    async def get_or_create_thread(
        self, key: ThreadKey, runtime: str, started_by: str | None
    ) -> Thread:
        """Atomic: concurrent callers with one key get the same row."""

    async def set_thread_remote(
        self, thread_id: int, runtime: str, remote_id: str | None
    ) -> None: ...

    async def try_lock_thread(self, thread_id: int, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the thread's work lease; False if another owner holds a live one.

        The lease serializes work on one thread across processes sharing the database.
        """

    async def unlock_thread(self, thread_id: int, owner: str) -> None: ...

    # -- turns ---------------------------------------------------------------------------

    async def enqueue_turn(
        self,
        thread_id: int,
        kind: TurnKind,
        *,
        user_id: str | None,
        text: str,
        message_ts: str,
        files: Sequence[dict[str, Any]] = (),
        parent_turn_id: int | None = None,
    ) -> Turn | None:
        """Record a QUEUED turn; None when (thread, message_ts) was already recorded (dedupe)."""

    async def get_turn(self, turn_id: int) -> Turn | None: ...

    async def next_queued_turn(self, thread_id: int) -> Turn | None:
        """The oldest QUEUED turn of the thread (by id)."""

    async def update_turn(
        self,
        turn_id: int,
        *,
        status: TurnStatus | None = None,
        remote_run_id: str | None = None,
        status_message_ts: str | None = None,
        error: str | None = None,
        attempts: int | None = None,
    ) -> None:
        """Set the given fields (None leaves a field as it is)."""

    async def list_turns(
        self, *, statuses: Sequence[TurnStatus], thread_id: int | None = None
    ) -> list[Turn]:
        """Turns in the given statuses, oldest first (recovery at start, tests)."""

    async def threads_with_queued_turns(self) -> list[int]: ...

    # -- quizzes -------------------------------------------------------------------------

    async def create_quiz(
        self,
        *,
        turn_id: int,
        thread_id: int,
        call_id: str,
        title: str,
        questions: Sequence[Question],
        status: QuizStatus,
        channel: str,
        remote_run_id: str | None,
        student_id: str | None,
        error_output: str | None = None,
    ) -> Quiz:
        """Idempotent on (thread_id, call_id): a second call returns the existing quiz."""

    async def get_quiz(self, quiz_id: int) -> Quiz | None: ...

    async def set_quiz_message(self, quiz_id: int, message_ts: str) -> None: ...

    async def list_quizzes(
        self,
        *,
        thread_id: int | None = None,
        turn_id: int | None = None,
        remote_run_id: str | None = None,
        statuses: Sequence[QuizStatus] | None = None,
    ) -> list[Quiz]:
        """Quizzes matching every given filter, oldest first."""

    async def record_answer(self, quiz_id: int, index: int, answer: str) -> Quiz | None:
        """Atomically set answer ``index`` while the quiz is OPEN (answers stay changeable).

        Does not change the status. Returns the updated quiz, or None when the quiz is
        not OPEN (submitted, skipped…) or the index is out of range.
        """

    async def transition_quizzes(
        self,
        quiz_ids: Sequence[int],
        to_status: QuizStatus,
        *,
        from_statuses: Sequence[QuizStatus],
    ) -> list[int]:
        """Compare-and-set: move those quizzes now in ``from_statuses``; returns the moved ids."""

    # -- files ---------------------------------------------------------------------------

    async def get_remote_file(self, thread_id: int, slack_file_id: str) -> str | None: ...

    async def remember_file(
        self, thread_id: int, slack_file_id: str, remote_file_id: str
    ) -> None: ...

    # -- settings ------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str) -> None: ...
