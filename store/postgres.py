"""The PostgreSQL store (asyncpg pool), for several bot processes sharing one database.

Every atomic operation is one statement (``INSERT … ON CONFLICT``, ``UPDATE … WHERE …
RETURNING``), so concurrent processes need no explicit row locks. Timestamps come from the
server clock (``now()``) so leases compare correctly across hosts.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

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
    turn_changes,
    turn_from_row,
)
from store.base import StoreError
from store.migrations import POSTGRES_MIGRATIONS_TABLE, pending, statements, warn_if_newer

log = logging.getLogger(__name__)

# Serializes migrations of every process on the server; "tutorbot" as a 64-bit integer.
_MIGRATION_LOCK_KEY = int.from_bytes(b"tutorbot", "big")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreError(f"postgres: {action} failed: {exc}") from exc


class PostgresStore:
    """``Store`` on PostgreSQL. ``schema`` (created if missing) isolates the tables."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid PostgreSQL schema name: {schema!r}")
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def schema(self) -> str | None:
        return self._schema

    def __repr__(self) -> str:
        return f"PostgresStore({self._where()!r})"

    def _where(self) -> str:
        """The database for logs, without credentials."""
        parts = urlsplit(self._dsn)
        where = f"{parts.hostname or 'localhost'}{parts.path}"
        return f"{where} schema {self._schema}" if self._schema else where

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        server_settings = {"search_path": f'"{self._schema}"'} if self._schema else None
        with _translate_errors(f"connecting to {self._where()}"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=server_settings,
            )
        try:
            with _translate_errors("applying migrations"):
                await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # Two processes starting at once: the second waits here, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            if self._schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await conn.execute(POSTGRES_MIGRATIONS_TABLE)
            applied = [
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            ]
            warn_if_newer(applied, self._where())
            for migration in pending(applied):
                log.info(
                    "applying migration %d (%s) to %s",
                    migration.version,
                    migration.description,
                    self._where(),
                )
                for statement in statements(migration.postgres):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )

    # -- plumbing ------------------------------------------------------------------------

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("postgres store is not open")
        return self._pool

    async def _fetch(self, action: str, sql: str, *args: Any) -> list[Any]:
        pool = self._require_pool()
        with _translate_errors(action):
            return list(await pool.fetch(sql, *args))

    async def _fetchrow(self, action: str, sql: str, *args: Any) -> Any:
        pool = self._require_pool()
        with _translate_errors(action):
            return await pool.fetchrow(sql, *args)

    async def _execute(self, action: str, sql: str, *args: Any) -> None:
        pool = self._require_pool()
        with _translate_errors(action):
            await pool.execute(sql, *args)

    # -- threads -------------------------------------------------------------------------

    async def get_thread(self, key: ThreadKey) -> Thread | None:
        row = await self._fetchrow(
            "get_thread",
            "SELECT * FROM threads WHERE team = $1 AND channel = $2 AND thread_ts = $3",
            key.team,
            key.channel,
            key.thread_ts,
        )
        return thread_from_row(row) if row else None

    async def get_thread_by_id(self, thread_id: int) -> Thread | None:
        row = await self._fetchrow(
            "get_thread_by_id", "SELECT * FROM threads WHERE id = $1", thread_id
        )
        return thread_from_row(row) if row else None

    async def get_or_create_thread(
        self, key: ThreadKey, runtime: str, started_by: str | None
    ) -> Thread:
        row = await self._fetchrow(
            "get_or_create_thread",
            "INSERT INTO threads"
            " (team, channel, thread_ts, runtime, started_by, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, now(), now())"
            " ON CONFLICT (team, channel, thread_ts) DO NOTHING RETURNING *",
            key.team,
            key.channel,
            key.thread_ts,
            runtime,
            started_by,
        )
        if row is None:
            # The conflicting insert has committed (ON CONFLICT waits for it), so this sees it.
            row = await self._fetchrow(
                "get_or_create_thread",
                "SELECT * FROM threads WHERE team = $1 AND channel = $2 AND thread_ts = $3",
                key.team,
                key.channel,
                key.thread_ts,
            )
        if row is None:
            raise StoreError(f"postgres: thread {key} vanished while being created")
        return thread_from_row(row)

    async def set_thread_remote(self, thread_id: int, runtime: str, remote_id: str | None) -> None:
        await self._execute(
            "set_thread_remote",
            "UPDATE threads SET runtime = $2, remote_id = $3, updated_at = now() WHERE id = $1",
            thread_id,
            runtime,
            remote_id,
        )

    async def try_lock_thread(self, thread_id: int, owner: str, ttl_seconds: float) -> bool:
        row = await self._fetchrow(
            "try_lock_thread",
            "UPDATE threads SET lock_owner = $2,"
            " lock_expires_at = clock_timestamp() + make_interval(secs => $3::float8)"
            " WHERE id = $1 AND (lock_owner IS NULL OR lock_owner = $2"
            " OR lock_expires_at IS NULL OR lock_expires_at <= clock_timestamp())"
            " RETURNING id",
            thread_id,
            owner,
            float(ttl_seconds),
        )
        return row is not None

    async def unlock_thread(self, thread_id: int, owner: str) -> None:
        await self._execute(
            "unlock_thread",
            "UPDATE threads SET lock_owner = NULL, lock_expires_at = NULL"
            " WHERE id = $1 AND lock_owner = $2",
            thread_id,
            owner,
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
        row = await self._fetchrow(
            "enqueue_turn",
            "INSERT INTO turns (thread_id, kind, status, user_id, text, message_ts, files,"
            " parent_turn_id, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, now(), now())"
            " ON CONFLICT (thread_id, message_ts) DO NOTHING RETURNING *",
            thread_id,
            kind.value,
            TurnStatus.QUEUED.value,
            user_id,
            text,
            message_ts,
            json.dumps(list(files)),
            parent_turn_id,
        )
        return turn_from_row(row) if row else None

    async def get_turn(self, turn_id: int) -> Turn | None:
        row = await self._fetchrow("get_turn", "SELECT * FROM turns WHERE id = $1", turn_id)
        return turn_from_row(row) if row else None

    async def next_queued_turn(self, thread_id: int) -> Turn | None:
        row = await self._fetchrow(
            "next_queued_turn",
            "SELECT * FROM turns WHERE thread_id = $1 AND status = $2 ORDER BY id LIMIT 1",
            thread_id,
            TurnStatus.QUEUED.value,
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
        assignments = [f"{name} = ${n}" for n, name in enumerate(columns, start=2)]
        assignments.append("updated_at = now()")
        await self._execute(
            "update_turn",
            f"UPDATE turns SET {', '.join(assignments)} WHERE id = $1",
            turn_id,
            *columns.values(),
        )

    async def list_turns(
        self, *, statuses: Sequence[TurnStatus], thread_id: int | None = None
    ) -> list[Turn]:
        if not statuses:
            return []
        sql = "SELECT * FROM turns WHERE status = ANY($1::text[])"
        args: list[Any] = [[s.value for s in statuses]]
        if thread_id is not None:
            sql += " AND thread_id = $2"
            args.append(thread_id)
        rows = await self._fetch("list_turns", sql + " ORDER BY id", *args)
        return [turn_from_row(row) for row in rows]

    async def threads_with_queued_turns(self) -> list[int]:
        rows = await self._fetch(
            "threads_with_queued_turns",
            "SELECT thread_id FROM turns WHERE status = $1 GROUP BY thread_id ORDER BY MIN(id)",
            TurnStatus.QUEUED.value,
        )
        return [row["thread_id"] for row in rows]

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
        row = await self._fetchrow(
            "create_quiz",
            "INSERT INTO quizzes (turn_id, thread_id, call_id, title, questions, answers,"
            " status, channel, remote_run_id, student_id, error_output, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, now(), now())"
            " ON CONFLICT (thread_id, call_id) DO NOTHING RETURNING *",
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
        )
        if row is None:
            row = await self._fetchrow(
                "create_quiz",
                "SELECT * FROM quizzes WHERE thread_id = $1 AND call_id = $2",
                thread_id,
                call_id,
            )
        if row is None:
            raise StoreError(f"postgres: quiz {call_id} vanished while being created")
        return quiz_from_row(row)

    async def get_quiz(self, quiz_id: int) -> Quiz | None:
        row = await self._fetchrow("get_quiz", "SELECT * FROM quizzes WHERE id = $1", quiz_id)
        return quiz_from_row(row) if row else None

    async def set_quiz_message(self, quiz_id: int, message_ts: str) -> None:
        await self._execute(
            "set_quiz_message",
            "UPDATE quizzes SET message_ts = $2, updated_at = now() WHERE id = $1",
            quiz_id,
            message_ts,
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
        args: list[Any] = []
        for column, value in (
            ("thread_id", thread_id),
            ("turn_id", turn_id),
            ("remote_run_id", remote_run_id),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        if statuses is not None:
            args.append([s.value for s in statuses])
            conditions.append(f"status = ANY(${len(args)}::text[])")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self._fetch("list_quizzes", f"SELECT * FROM quizzes{where} ORDER BY id", *args)
        return [quiz_from_row(row) for row in rows]

    async def record_answer(self, quiz_id: int, index: int, answer: str) -> Quiz | None:
        row = await self._fetchrow(
            "record_answer",
            "UPDATE quizzes SET updated_at = now(),"
            " answers = jsonb_set(answers, ARRAY[($2::int)::text], to_jsonb($3::text))"
            " WHERE id = $1 AND status = $4"
            " AND $2::int >= 0 AND $2::int < jsonb_array_length(answers)"
            " RETURNING *",
            quiz_id,
            index,
            answer,
            QuizStatus.OPEN.value,
        )
        return quiz_from_row(row) if row else None

    async def transition_quizzes(
        self,
        quiz_ids: Sequence[int],
        to_status: QuizStatus,
        *,
        from_statuses: Sequence[QuizStatus],
    ) -> list[int]:
        if not quiz_ids or not from_statuses:
            return []
        rows = await self._fetch(
            "transition_quizzes",
            "UPDATE quizzes SET status = $1, updated_at = now()"
            " WHERE id = ANY($2::bigint[]) AND status = ANY($3::text[])"
            " RETURNING id",
            to_status.value,
            list(quiz_ids),
            [s.value for s in from_statuses],
        )
        return ordered_subset(quiz_ids, [row["id"] for row in rows])

    # -- files ---------------------------------------------------------------------------

    async def get_remote_file(self, thread_id: int, slack_file_id: str) -> str | None:
        row = await self._fetchrow(
            "get_remote_file",
            "SELECT remote_file_id FROM files WHERE thread_id = $1 AND slack_file_id = $2",
            thread_id,
            slack_file_id,
        )
        return row["remote_file_id"] if row else None

    async def remember_file(self, thread_id: int, slack_file_id: str, remote_file_id: str) -> None:
        await self._execute(
            "remember_file",
            "INSERT INTO files (thread_id, slack_file_id, remote_file_id, created_at)"
            " VALUES ($1, $2, $3, now()) ON CONFLICT (thread_id, slack_file_id)"
            " DO UPDATE SET remote_file_id = excluded.remote_file_id",
            thread_id,
            slack_file_id,
            remote_file_id,
        )

    # -- settings ------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        row = await self._fetchrow("get_setting", "SELECT value FROM settings WHERE key = $1", key)
        return row["value"] if row else None

    async def set_setting(self, key: str, value: str) -> None:
        await self._execute(
            "set_setting",
            "INSERT INTO settings (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )
