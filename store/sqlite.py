"""The SQLite store: one aiosqlite connection per process, WAL, busy timeout.

aiosqlite runs every call on its own thread, so waiting for the file lock (busy timeout)
never blocks the event loop. All statements on the connection go through one asyncio lock,
so a coroutine never sees another one's half-done transaction; every write is its own
``BEGIN IMMEDIATE`` transaction, which takes the file's write lock up front: a second
process waits for it (busy timeout) instead of failing with "database is locked" when a
read-then-write transaction tries to upgrade.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

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
from store._rows import (
    ordered_subset,
    questions_json,
    quiz_from_row,
    thread_from_row,
    to_text,
    turn_changes,
    turn_from_row,
    utc_now,
)
from store.base import StoreError
from store.migrations import SQLITE_MIGRATIONS_TABLE, pending, statements, warn_if_newer

log = logging.getLogger(__name__)

MEMORY = ":memory:"


@contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {action} failed: {exc}") from exc


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


class SqliteStore:
    """``Store`` on a SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is not None:
            return
        if self._path != MEMORY:
            parent = Path(self._path).parent
            try:
                await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"sqlite: cannot create directory {parent}: {exc}") from exc
        with _translate_errors(f"opening {self._path}"):
            db = await aiosqlite.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
        try:
            db.row_factory = sqlite3.Row
            with _translate_errors("configuring the connection"):
                await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                await self._use_wal(db)
                await db.execute("PRAGMA synchronous = NORMAL")
                await db.execute("PRAGMA foreign_keys = ON")
            with _translate_errors("applying migrations"):
                await self._migrate(db)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()

    async def _use_wal(self, db: aiosqlite.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock and SQLite answers SQLITE_BUSY
        # at once, without the busy handler, when another process is doing the same: retry.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
                break
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.02)
        mode = rows[0][0] if rows else None
        if mode not in ("wal", "memory"):
            log.warning("sqlite %s: journal mode is %s, not WAL", self._path, mode)

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        try:
            await db.execute("BEGIN IMMEDIATE")
            await db.execute(SQLITE_MIGRATIONS_TABLE)
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
            applied = [row[0] for row in rows]
            warn_if_newer(applied, self._path)
            for migration in pending(applied):
                log.info(
                    "applying migration %d (%s) to %s",
                    migration.version,
                    migration.description,
                    self._path,
                )
                for statement in statements(migration.sqlite):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, self._now()),
                )
            await db.execute("COMMIT")
        except BaseException:
            await _rollback(db)
            raise

    # -- plumbing ------------------------------------------------------------------------

    def _now(self) -> str:
        return to_text(self._clock())

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("sqlite store is not open")
        return self._db

    @asynccontextmanager
    async def _read(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with _translate_errors(action):
                yield self._connection()

    @asynccontextmanager
    async def _write(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._connection()
            with _translate_errors(action):
                # BEGIN is inside the try: if we are cancelled while it is queued, it still
                # runs on aiosqlite's thread, and the ROLLBACK queued after it undoes it.
                try:
                    await db.execute("BEGIN IMMEDIATE")
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    await _rollback(db)
                    raise

    @staticmethod
    async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> Any:
        rows = list(await db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    # -- threads -------------------------------------------------------------------------

    async def get_thread(self, key: ThreadKey) -> Thread | None:
        async with self._read("get_thread") as db:
            row = await self._one(
                db,
                "SELECT * FROM threads WHERE team = ? AND channel = ? AND thread_ts = ?",
                (key.team, key.channel, key.thread_ts),
            )
        return thread_from_row(row) if row else None

    async def get_thread_by_id(self, thread_id: int) -> Thread | None:
        async with self._read("get_thread_by_id") as db:
            row = await self._one(db, "SELECT * FROM threads WHERE id = ?", (thread_id,))
        return thread_from_row(row) if row else None

    async def get_or_create_thread(
        self, key: ThreadKey, runtime: str, started_by: str | None
    ) -> Thread:
        now = self._now()
        async with self._write("get_or_create_thread") as db:
            row = await self._one(
                db,
                "INSERT INTO threads"
                " (team, channel, thread_ts, runtime, started_by, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (team, channel, thread_ts) DO NOTHING RETURNING *",
                (key.team, key.channel, key.thread_ts, runtime, started_by, now, now),
            )
            if row is None:
                row = await self._one(
                    db,
                    "SELECT * FROM threads WHERE team = ? AND channel = ? AND thread_ts = ?",
                    (key.team, key.channel, key.thread_ts),
                )
        return thread_from_row(row)

    async def set_thread_remote(self, thread_id: int, runtime: str, remote_id: str | None) -> None:
        async with self._write("set_thread_remote") as db:
            await db.execute(
                "UPDATE threads SET runtime = ?, remote_id = ?, updated_at = ? WHERE id = ?",
                (runtime, remote_id, self._now(), thread_id),
            )

    async def try_lock_thread(self, thread_id: int, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        expires = now + timedelta(seconds=ttl_seconds)
        async with self._write("try_lock_thread") as db:
            row = await self._one(
                db,
                "UPDATE threads SET lock_owner = ?, lock_expires_at = ?"
                " WHERE id = ? AND (lock_owner IS NULL OR lock_owner = ?"
                " OR lock_expires_at IS NULL OR lock_expires_at <= ?)"
                " RETURNING id",
                (owner, to_text(expires), thread_id, owner, to_text(now)),
            )
        return row is not None

    async def unlock_thread(self, thread_id: int, owner: str) -> None:
        async with self._write("unlock_thread") as db:
            await db.execute(
                "UPDATE threads SET lock_owner = NULL, lock_expires_at = NULL"
                " WHERE id = ? AND lock_owner = ?",
                (thread_id, owner),
            )

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
        now = self._now()
        async with self._write("enqueue_turn") as db:
            row = await self._one(
                db,
                "INSERT INTO turns (thread_id, kind, status, user_id, text, message_ts, files,"
                " parent_turn_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (thread_id, message_ts) DO NOTHING RETURNING *",
                (
                    thread_id,
                    kind.value,
                    TurnStatus.QUEUED.value,
                    user_id,
                    text,
                    message_ts,
                    json.dumps(list(files)),
                    parent_turn_id,
                    now,
                    now,
                ),
            )
        return turn_from_row(row) if row else None

    async def get_turn(self, turn_id: int) -> Turn | None:
        async with self._read("get_turn") as db:
            row = await self._one(db, "SELECT * FROM turns WHERE id = ?", (turn_id,))
        return turn_from_row(row) if row else None

    async def next_queued_turn(self, thread_id: int) -> Turn | None:
        async with self._read("next_queued_turn") as db:
            row = await self._one(
                db,
                "SELECT * FROM turns WHERE thread_id = ? AND status = ? ORDER BY id LIMIT 1",
                (thread_id, TurnStatus.QUEUED.value),
            )
        return turn_from_row(row) if row else None

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
        columns = turn_changes(
            status=status,
            remote_run_id=remote_run_id,
            status_message_ts=status_message_ts,
            error=error,
            attempts=attempts,
        )
        columns["updated_at"] = self._now()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        async with self._write("update_turn") as db:
            await db.execute(
                f"UPDATE turns SET {assignments} WHERE id = ?", (*columns.values(), turn_id)
            )

    async def list_turns(
        self, *, statuses: Sequence[TurnStatus], thread_id: int | None = None
    ) -> list[Turn]:
        if not statuses:
            return []
        values: list[Any] = [s.value for s in statuses]
        sql = f"SELECT * FROM turns WHERE status IN ({_marks(values)})"
        if thread_id is not None:
            sql += " AND thread_id = ?"
            values.append(thread_id)
        async with self._read("list_turns") as db:
            rows = await db.execute_fetchall(sql + " ORDER BY id", values)
        return [turn_from_row(row) for row in rows]

    async def threads_with_queued_turns(self) -> list[int]:
        async with self._read("threads_with_queued_turns") as db:
            rows = await db.execute_fetchall(
                "SELECT thread_id FROM turns WHERE status = ? GROUP BY thread_id ORDER BY MIN(id)",
                (TurnStatus.QUEUED.value,),
            )
        return [row[0] for row in rows]

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
        now = self._now()
        async with self._write("create_quiz") as db:
            row = await self._one(
                db,
                "INSERT INTO quizzes (turn_id, thread_id, call_id, title, questions, answers,"
                " status, channel, remote_run_id, student_id, error_output, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (thread_id, call_id) DO NOTHING RETURNING *",
                (
                    turn_id,
                    thread_id,
                    call_id,
                    title,
                    questions_json(questions),
                    json.dumps([None] * len(questions)),
                    status.value,
                    channel,
                    remote_run_id,
                    student_id,
                    error_output,
                    now,
                    now,
                ),
            )
            if row is None:
                row = await self._one(
                    db,
                    "SELECT * FROM quizzes WHERE thread_id = ? AND call_id = ?",
                    (thread_id, call_id),
                )
        return quiz_from_row(row)

    async def get_quiz(self, quiz_id: int) -> Quiz | None:
        async with self._read("get_quiz") as db:
            row = await self._one(db, "SELECT * FROM quizzes WHERE id = ?", (quiz_id,))
        return quiz_from_row(row) if row else None

    async def set_quiz_message(self, quiz_id: int, message_ts: str) -> None:
        async with self._write("set_quiz_message") as db:
            await db.execute(
                "UPDATE quizzes SET message_ts = ?, updated_at = ? WHERE id = ?",
                (message_ts, self._now(), quiz_id),
            )

    async def list_quizzes(
        self,
        *,
        thread_id: int | None = None,
        turn_id: int | None = None,
        remote_run_id: str | None = None,
        statuses: Sequence[QuizStatus] | None = None,
    ) -> list[Quiz]:
        if statuses is not None and not statuses:
            return []
        conditions: list[str] = []
        values: list[Any] = []
        for column, value in (
            ("thread_id", thread_id),
            ("turn_id", turn_id),
            ("remote_run_id", remote_run_id),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                values.append(value)
        if statuses is not None:
            conditions.append(f"status IN ({_marks(statuses)})")
            values.extend(s.value for s in statuses)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._read("list_quizzes") as db:
            rows = await db.execute_fetchall(f"SELECT * FROM quizzes{where} ORDER BY id", values)
        return [quiz_from_row(row) for row in rows]

    async def record_answer(self, quiz_id: int, index: int, answer: str) -> Quiz | None:
        async with self._write("record_answer") as db:
            row = await self._one(db, "SELECT * FROM quizzes WHERE id = ?", (quiz_id,))
            if row is None or row["status"] != QuizStatus.OPEN.value:
                return None
            answers = json.loads(row["answers"])
            if not 0 <= index < len(answers):
                return None
            answers[index] = answer
            row = await self._one(
                db,
                "UPDATE quizzes SET answers = ?, updated_at = ? WHERE id = ? RETURNING *",
                (json.dumps(answers), self._now(), quiz_id),
            )
        return quiz_from_row(row)

    async def transition_quizzes(
        self,
        quiz_ids: Sequence[int],
        to_status: QuizStatus,
        *,
        from_statuses: Sequence[QuizStatus],
    ) -> list[int]:
        if not quiz_ids or not from_statuses:
            return []
        async with self._write("transition_quizzes") as db:
            rows = await db.execute_fetchall(
                f"UPDATE quizzes SET status = ?, updated_at = ?"
                f" WHERE id IN ({_marks(quiz_ids)}) AND status IN ({_marks(from_statuses)})"
                f" RETURNING id",
                (to_status.value, self._now(), *quiz_ids, *(s.value for s in from_statuses)),
            )
        return ordered_subset(quiz_ids, [row[0] for row in rows])

    # -- files ---------------------------------------------------------------------------

    async def get_remote_file(self, thread_id: int, slack_file_id: str) -> str | None:
        async with self._read("get_remote_file") as db:
            row = await self._one(
                db,
                "SELECT remote_file_id FROM files WHERE thread_id = ? AND slack_file_id = ?",
                (thread_id, slack_file_id),
            )
        return row[0] if row else None

    async def remember_file(self, thread_id: int, slack_file_id: str, remote_file_id: str) -> None:
        async with self._write("remember_file") as db:
            await db.execute(
                "INSERT INTO files (thread_id, slack_file_id, remote_file_id, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (thread_id, slack_file_id)"
                " DO UPDATE SET remote_file_id = excluded.remote_file_id",
                (thread_id, slack_file_id, remote_file_id, self._now()),
            )

    # -- settings ------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        async with self._read("get_setting") as db:
            row = await self._one(db, "SELECT value FROM settings WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_setting(self, key: str, value: str) -> None:
        async with self._write("set_setting") as db:
            await db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        await db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction open (BEGIN failed, or SQLite already rolled back)
