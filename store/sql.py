"""The store: one implementation of ``Store`` on SQLAlchemy Core's asyncio API.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for several processes; what differs
between them lives in ``store.dialects``. Every operation but ``record_answer`` is one
statement (``INSERT … ON CONFLICT``, ``UPDATE … WHERE … RETURNING``), run as its own
transaction, so concurrent processes need no explicit row locks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.domain import (
    Question,
    Quiz,
    QuizMove,
    QuizStatus,
    Thread,
    ThreadKey,
    Turn,
    TurnKind,
    TurnStatus,
)
from store import migrate, schema
from store._gate import Gate
from store._pinned import PinnedConnections
from store._rows import (
    ordered_subset,
    questions_json,
    quiz_from_row,
    thread_from_row,
    turn_from_row,
)
from store.agent import AgentRecords
from store.base import (
    ChatRecord,
    Fence,
    LeaseLost,
    NewMessage,
    NextWork,
    Recorded,
    StoreError,
)
from store.dialects import (
    DRIVER_ERRORS,
    Database,
    Engines,
    Pool,
    PostgresDatabase,
    SqliteDatabase,
    db_now,
    insert_for,
)
from store.feedback import FeedbackRecords
from store.statements import list_quizzes_statement, statements_for

_QUEUED = TurnStatus.QUEUED.value
# What a database operation raises when it fails (not the caller's fault): -> StoreError.
STORE_FAILURES: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError, *DRIVER_ERRORS)


class SqlStore(AgentRecords, FeedbackRecords):
    """``Store`` on a ``Database`` (``SqlStore.sqlite(path)``, ``SqlStore.postgres(dsn)``)."""

    def __init__(self, database: Database, *, pool: Pool | None = None) -> None:
        self._database = database
        self._pool = pool or Pool()
        self._engines: Engines | None = None
        self._sql = statements_for(database.dialect)
        self._gates = database.gates(self._pool)
        self._pinned: PinnedConnections | None = None

    @classmethod
    def sqlite(
        cls, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, pool: Pool | None = None
    ) -> SqlStore:
        return cls(SqliteDatabase(os.fspath(path), busy_timeout=busy_timeout), pool=pool)

    @classmethod
    def postgres(cls, dsn: str, *, schema: str | None = None, pool: Pool | None = None) -> SqlStore:
        return cls(PostgresDatabase(dsn, schema=schema), pool=pool)

    @property
    def database(self) -> Database:
        return self._database

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def engine(self) -> AsyncEngine:
        """The open engine, transactional (``engine.begin()`` is one transaction), for other
        libraries that keep their tables in this database."""
        return self._require_open().transactional

    def __repr__(self) -> str:
        return f"SqlStore({self._database.dialect}: {self._database.where!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply pending migrations (see ``store.migrate``)."""
        if self._engines is not None:
            return
        engines = self._database.create_engines(self._pool)
        try:
            with self._errors(f"opening {self._database.where}"):
                await self._database.prepare(engines)
            with self._errors(f"migrating {self._database.where}"):
                await migrate.upgrade(engines.transactional, self._database)
        except BaseException:
            await engines.dispose()
            raise
        self._pinned = PinnedConnections(
            engines.single.sync_engine,
            self._database.pinned(self._pool),
            ping_after_idle=self._database.ping_after_idle,
        )
        self._engines = engines

    async def close(self) -> None:
        engines, self._engines = self._engines, None
        pinned, self._pinned = self._pinned, None
        if pinned is not None:
            await pinned.close()
        if engines is not None:
            await engines.dispose()

    # -- plumbing ------------------------------------------------------------------------

    def _require_open(self) -> Engines:
        if self._engines is None:
            raise StoreError(f"{self._database.dialect} store is not open")
        return self._engines

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except STORE_FAILURES as exc:
            raise self._failure(action, exc) from exc

    def _failure(self, action: str, exc: BaseException) -> StoreError:
        return StoreError(f"{self._database.dialect}: {action} failed: {exc}")

    async def _run(
        self, action: str, statement: sa.Executable, params: Mapping[str, Any], *, write: bool
    ) -> Sequence[sa.Row[Any]]:
        """One statement as its own transaction; its rows (none for a plain UPDATE)."""
        pinned = self._pinned
        if pinned is None:
            raise StoreError(f"{self._database.dialect} store is not open")
        gate = self._gates.write if write else self._gates.read
        try:
            async with _held(gate):
                return await pinned.run(statement, params)
        except STORE_FAILURES as exc:
            raise self._failure(action, exc) from exc

    async def _read(
        self, action: str, statement: sa.Executable, params: Mapping[str, Any]
    ) -> Sequence[sa.Row[Any]]:
        return await self._run(action, statement, params, write=False)

    async def _write(
        self, action: str, statement: sa.Executable, params: Mapping[str, Any]
    ) -> Sequence[sa.Row[Any]]:
        return await self._run(action, statement, params, write=True)

    @contextlib.asynccontextmanager
    async def _transaction(
        self, action: str, *, priority: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """Several statements, one write transaction (``BEGIN IMMEDIATE`` on SQLite);
        ``priority`` goes ahead of the other writes queued in this process."""
        engines = self._require_open()
        with self._errors(action):
            async with (
                _held(self._gates.write, priority=priority),
                engines.transactional.begin() as conn,
            ):
                yield conn

    # -- threads -------------------------------------------------------------------------

    async def get_thread(self, key: ThreadKey) -> Thread | None:
        rows = await self._read("get_thread", self._sql.get_thread, _key(key))
        return thread_from_row(rows[0]) if rows else None

    async def get_thread_by_id(self, thread_id: int) -> Thread | None:
        rows = await self._read(
            "get_thread_by_id", self._sql.get_thread_by_id, {"thread_id": thread_id}
        )
        return thread_from_row(rows[0]) if rows else None

    async def get_or_create_thread(
        self, key: ThreadKey, runtime: str, started_by: str | None
    ) -> Thread:
        rows = await self._write(
            "get_or_create_thread",
            self._sql.create_thread,
            {**_key(key), "runtime": runtime, "started_by": started_by},
        )
        if not rows:
            # The conflicting insert has committed (ON CONFLICT waits for it), so this sees it.
            rows = await self._read("get_or_create_thread", self._sql.get_thread, _key(key))
        if not rows:
            raise StoreError(f"thread {key} vanished while being created")
        return thread_from_row(rows[0])

    async def set_thread_remote(
        self, thread_id: int, runtime: str, remote_id: str | None, *, fence: Fence | None = None
    ) -> None:
        rows = await self._write(
            "set_thread_remote",
            self._sql.set_thread_remote,
            {
                **_fence(fence),
                "thread_id": thread_id,
                "new_runtime": runtime,
                "new_remote_id": remote_id,
            },
        )
        if fence is not None and not rows:
            raise LeaseLost(f"thread {thread_id}: the lease was lost")

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
        order_key: str | None = None,
    ) -> Turn | None:
        rows = await self._write(
            "enqueue_turn",
            self._sql.enqueue_turn,
            {
                "thread_id": thread_id,
                "kind": kind.value,
                "status": _QUEUED,
                "user_id": user_id,
                "text": text,
                "message_ts": message_ts,
                "files": list(files),
                "parent_turn_id": parent_turn_id,
                "order_key": order_key,
            },
        )
        return turn_from_row(rows[0]) if rows else None

    async def record_messages(self, messages: Sequence[NewMessage]) -> list[Recorded]:
        """Three statements for the whole batch: create the threads asked for, read every
        thread of the batch, insert the turns (duplicates skipped)."""
        if not messages:
            return []
        insert = insert_for(self._database.dialect)
        keys = list(dict.fromkeys(m.key for m in messages))
        starters = {
            m.key: m for m in reversed(messages) if m.create_thread
        }  # the first message that may start each thread
        # Slack serves this from a burst: it goes ahead of the other writes.
        async with self._transaction("record_messages", priority=True) as conn:
            if starters:
                await conn.execute(
                    insert(schema.threads)
                    .values(
                        [
                            {
                                **_key(key),
                                "runtime": m.runtime,
                                "started_by": m.user_id,
                                "created_at": db_now(),
                                "updated_at": db_now(),
                            }
                            for key, m in starters.items()
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["team", "channel", "thread_ts"])
                )
            rows = (
                await conn.execute(
                    sa.select(schema.threads).where(
                        sa.tuple_(
                            schema.threads.c.team,
                            schema.threads.c.channel,
                            schema.threads.c.thread_ts,
                        ).in_([(k.team, k.channel, k.thread_ts) for k in keys])
                    )
                )
            ).all()
            threads = {ThreadKey(r.team, r.channel, r.thread_ts): thread_from_row(r) for r in rows}
            wanted = [m for m in messages if m.key in threads]
            inserted: dict[tuple[int, str], Turn] = {}
            if wanted:
                result = await conn.execute(
                    insert(schema.turns)
                    .values(
                        [
                            {
                                "thread_id": threads[m.key].id,
                                "kind": TurnKind.MESSAGE.value,
                                "status": _QUEUED,
                                "user_id": m.user_id,
                                "text": m.text,
                                "message_ts": m.message_ts,
                                "files": list(m.files),
                                "order_key": m.order_key,
                                "created_at": db_now(),
                                "updated_at": db_now(),
                            }
                            for m in {(m.key, m.message_ts): m for m in wanted}.values()
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["thread_id", "message_ts"])
                    .returning(*schema.turns.c)
                )
                for row in result.all():
                    turn = turn_from_row(row)
                    inserted[(turn.thread_id, turn.message_ts)] = turn
        recorded: list[Recorded] = []
        for m in messages:
            thread = threads.get(m.key)
            if thread is None:
                recorded.append(Recorded(None, None))
                continue
            # Each new turn goes to its first message; a second copy in the batch is a dup.
            recorded.append(Recorded(thread, inserted.pop((thread.id, m.message_ts), None)))
        return recorded

    async def get_turn(self, turn_id: int) -> Turn | None:
        rows = await self._read("get_turn", self._sql.get_turn, {"turn_id": turn_id})
        return turn_from_row(rows[0]) if rows else None

    async def next_queued_turn(self, thread_id: int) -> Turn | None:
        rows = await self._read(
            "next_queued_turn",
            self._sql.next_queued_turn,
            {"thread_id": thread_id, "status": _QUEUED},
        )
        return turn_from_row(rows[0]) if rows else None

    async def update_turn(
        self,
        turn_id: int,
        *,
        status: TurnStatus | None = None,
        remote_run_id: str | None = None,
        status_message_ts: str | None = None,
        error: str | None = None,
        attempts: int | None = None,
        progress: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        # One statement for every combination: a NULL parameter leaves its column as is.
        rows = await self._write(
            "update_turn",
            self._sql.update_turn,
            {
                **_fence(fence),
                "turn_id": turn_id,
                "new_status": status.value if status is not None else None,
                "new_remote_run_id": remote_run_id,
                "new_status_message_ts": status_message_ts,
                "new_error": error,
                "new_attempts": attempts,
                "new_progress": progress,
            },
        )
        if fence is not None and not rows:
            raise LeaseLost(f"turn {turn_id}: the lease of thread {fence.thread_id} was lost")

    async def record_run_started(
        self,
        turn_id: int,
        run_id: str,
        *,
        thread_id: int,
        thread_remote: tuple[str, str] | None = None,
        quiz_moves: Sequence[QuizMove] = (),
        complete_turns: Sequence[int] = (),
        fence: Fence | None = None,
    ) -> list[int]:
        sql = self._sql
        moved: list[int] = []
        if thread_remote is None and not quiz_moves and not complete_turns:
            # The usual turn (its thread already known to the model service): one statement.
            rows = await self._write(
                "record_run_started",
                sql.set_turn_run,
                {**_fence(fence), "turn_id": turn_id, "new_remote_run_id": run_id},
            )
            if fence is not None and not rows:
                raise LeaseLost(f"turn {turn_id}: the lease of thread {fence.thread_id} was lost")
            return moved
        async with self._transaction("record_run_started") as conn:
            started = await conn.execute(
                sql.set_turn_run,
                {**_fence(fence), "turn_id": turn_id, "new_remote_run_id": run_id},
            )
            if fence is not None and started.first() is None:
                raise LeaseLost(f"turn {turn_id}: the lease of thread {fence.thread_id} was lost")
            if thread_remote is not None:
                runtime, remote_id = thread_remote
                await conn.execute(
                    sql.set_thread_remote,
                    {
                        **_fence(None),  # the turn's update above checked the lease
                        "thread_id": thread_id,
                        "new_runtime": runtime,
                        "new_remote_id": remote_id,
                    },
                )
            for move in quiz_moves:
                row = (
                    await conn.execute(
                        sql.transition_quiz,
                        {
                            "quiz_id": move.quiz_id,
                            "to_status": move.to_status.value,
                            "from_statuses": [s.value for s in move.from_statuses],
                        },
                    )
                ).first()
                if row is not None:
                    moved.append(row.id)
            if complete_turns:
                await conn.execute(
                    sql.complete_parked_turns,
                    {
                        "turn_ids": list(complete_turns),
                        "from_status": TurnStatus.NEEDS_TOOL_OUTPUTS.value,
                        "to_status": TurnStatus.COMPLETED.value,
                    },
                )
        return moved

    async def list_turns(
        self, *, statuses: Sequence[TurnStatus], thread_id: int | None = None
    ) -> list[Turn]:
        if not statuses:
            return []
        values = [s.value for s in statuses]
        if thread_id is None:
            rows = await self._read("list_turns", self._sql.turns_by_status, {"statuses": values})
        else:
            rows = await self._read(
                "list_turns",
                self._sql.thread_turns_by_status,
                {"statuses": values, "thread_id": thread_id},
            )
        return [turn_from_row(row) for row in rows]

    async def threads_with_queued_turns(self) -> list[int]:
        rows = await self._read(
            "threads_with_queued_turns", self._sql.threads_with_turns_in, {"status": _QUEUED}
        )
        return [row.thread_id for row in rows]

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
        rows = await self._write(
            "create_quiz",
            self._sql.create_quiz,
            {
                "turn_id": turn_id,
                "thread_id": thread_id,
                "call_id": call_id,
                "title": title,
                "questions": questions_json(questions),
                "answers": [None] * len(questions),
                "status": status.value,
                "channel": channel,
                "remote_run_id": remote_run_id,
                "student_id": student_id,
                "error_output": error_output,
            },
        )
        if not rows:
            rows = await self._read(
                "create_quiz",
                self._sql.get_quiz_by_call,
                {"thread_id": thread_id, "call_id": call_id},
            )
        if not rows:
            raise StoreError(f"quiz {call_id} vanished while being created")
        return quiz_from_row(rows[0])

    async def get_quiz(self, quiz_id: int) -> Quiz | None:
        rows = await self._read("get_quiz", self._sql.get_quiz, {"quiz_id": quiz_id})
        return quiz_from_row(rows[0]) if rows else None

    async def set_quiz_message(self, quiz_id: int, message_ts: str) -> None:
        await self._write(
            "set_quiz_message",
            self._sql.set_quiz_message,
            {"quiz_id": quiz_id, "new_message_ts": message_ts},
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
        statement = list_quizzes_statement(
            thread_id is not None,
            turn_id is not None,
            remote_run_id is not None,
            statuses is not None,
        )
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "turn_id": turn_id,
            "remote_run_id": remote_run_id,
        }
        if statuses is not None:
            params["statuses"] = [s.value for s in statuses]
        rows = await self._read("list_quizzes", statement, params)
        return [quiz_from_row(row) for row in rows]

    async def record_answer(self, quiz_id: int, index: int, answer: str) -> Quiz | None:
        async with self._transaction("record_answer") as conn:
            current = (await conn.execute(self._sql.lock_quiz, {"quiz_id": quiz_id})).first()
            if current is None or current.status != QuizStatus.OPEN.value:
                return None
            answers = list(current.answers)
            if not 0 <= index < len(answers):
                return None
            answers[index] = answer
            result = await conn.execute(
                self._sql.set_quiz_answers, {"quiz_id": quiz_id, "new_answers": answers}
            )
            row = result.one()
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
        rows = await self._write(
            "transition_quizzes",
            self._sql.transition_quizzes,
            {
                "quiz_ids": list(quiz_ids),
                "from_statuses": [s.value for s in from_statuses],
                "to_status": to_status.value,
            },
        )
        return ordered_subset(quiz_ids, [row.id for row in rows])

    # -- files ---------------------------------------------------------------------------

    async def get_remote_file(self, thread_id: int, slack_file_id: str) -> str | None:
        rows = await self._read(
            "get_remote_file",
            self._sql.get_remote_file,
            {"thread_id": thread_id, "slack_file_id": slack_file_id},
        )
        return rows[0].remote_file_id if rows else None

    async def remember_file(self, thread_id: int, slack_file_id: str, remote_file_id: str) -> None:
        await self._write(
            "remember_file",
            self._sql.remember_file,
            {
                "thread_id": thread_id,
                "slack_file_id": slack_file_id,
                "remote_file_id": remote_file_id,
            },
        )

    # -- several processes: heartbeats, leases, the order of turns ------------------------

    async def heartbeat(self, owner: str, ttl_seconds: float) -> None:
        # On a pooled connection of its own, never queued behind the turns' writes: under a
        # burst those can take seconds, and a late heartbeat would hold this process's
        # answers back (and invite another process to take its threads over).
        engines = self._require_open()
        with self._errors("heartbeat"):
            async with engines.transactional.begin() as conn:
                await conn.execute(self._sql.heartbeat, {"owner": owner, "ttl": ttl_seconds})

    async def retire_worker(self, owner: str) -> None:
        async with self._transaction("retire_worker") as conn:
            await conn.execute(self._sql.free_leases_of, {"owner": owner})
            await conn.execute(self._sql.retire_worker, {"owner": owner})

    async def claim_thread(self, thread_id: int, owner: str) -> int | None:
        claimed = await self.take_thread(thread_id, owner)
        return claimed[0] if claimed is not None else None

    async def take_thread(self, thread_id: int, owner: str) -> tuple[int, Thread] | None:
        rows = await self._write(
            "claim_thread", self._sql.claim_thread, {"thread_id": thread_id, "owner": owner}
        )
        return (int(rows[0].lock_epoch), thread_from_row(rows[0])) if rows else None

    async def release_thread(self, fence: Fence) -> bool:
        rows = await self._write(
            "release_thread",
            self._sql.release_thread,
            {"thread_id": fence.thread_id, "owner": fence.owner, "epoch": fence.epoch},
        )
        return bool(rows)

    async def threads_needing_work(
        self, owner: str, *, exclude_teams: Sequence[str] = ()
    ) -> list[tuple[int, bool]]:
        rows = await self._read(
            "threads_needing_work",
            self._sql.threads_needing_work,
            {"owner": owner, "exclude_teams": list(exclude_teams) or [""]},
        )
        return [(row.thread_id, row.lock_owner == owner) for row in rows]

    async def next_turn(self, thread_id: int) -> Turn | None:
        turns = await self.next_turns(thread_id, limit=1)
        return turns[0] if turns else None

    async def next_turns(self, thread_id: int, *, limit: int = 10) -> list[Turn]:
        """The thread's turns in the order they are to be worked (see ``next_turn``)."""
        return (await self.next_work(thread_id, limit=limit)).turns

    async def next_work(self, thread_id: int, *, limit: int = 10) -> NextWork:
        rows = await self._read(
            "next_work", self._sql.next_turns, {"thread_id": thread_id, "limit": limit}
        )
        if not rows:
            return NextWork([], None, None)
        return NextWork(
            [turn_from_row(row) for row in rows], rows[0].quiz_student, rows[0].quiz_since
        )

    async def seen_request(self, key: str) -> bool:
        rows = await self._write("seen_request", self._sql.seen_request, {"key": key})
        return bool(rows)

    async def ping(self) -> None:
        await self._read("ping", self._sql.ping, {})

    # -- the chat runtime's conversations ------------------------------------------------

    async def chat_messages(self, conversation: str) -> list[ChatRecord]:
        rows = await self._read(
            "chat_messages", self._sql.chat_messages, {"conversation": conversation}
        )
        return [ChatRecord(row.run_id, row.message) for row in rows]

    async def append_chat_messages(
        self, conversation: str, run_id: str, messages: Sequence[dict[str, Any]]
    ) -> None:
        if not messages:
            return
        async with self._transaction("append_chat_messages") as conn:
            await conn.execute(
                self._sql.append_chat_message,
                [{"conversation": conversation, "run_id": run_id, "message": m} for m in messages],
            )

    async def get_chat_document(self, document_id: str) -> str | None:
        rows = await self._read(
            "get_chat_document", self._sql.get_chat_document, {"document_id": document_id}
        )
        return rows[0].text if rows else None

    async def put_chat_document(self, document_id: str, text: str) -> None:
        await self._write(
            "put_chat_document", self._sql.put_chat_document, {"id": document_id, "text": text}
        )

    # -- settings ------------------------------------------------------------------------

    async def get_setting(self, key: str) -> str | None:
        rows = await self._read("get_setting", self._sql.get_setting, {"key": key})
        return rows[0].value if rows else None

    async def set_setting(self, key: str, value: str) -> None:
        await self._write("set_setting", self._sql.set_setting, {"key": key, "value": value})


def _fence(fence: Fence | None) -> dict[str, Any]:
    if fence is None:
        return {"fence_owner": None, "fence_thread": None, "fence_epoch": None}
    return {
        "fence_owner": fence.owner,
        "fence_thread": fence.thread_id,
        "fence_epoch": fence.epoch,
    }


def _key(key: ThreadKey) -> dict[str, str]:
    return {"team": key.team, "channel": key.channel, "thread_ts": key.thread_ts}


def _held(
    gate: Gate | None, *, priority: bool = False
) -> contextlib.AbstractAsyncContextManager[Any]:
    return gate.held(priority=priority) if gate is not None else contextlib.nullcontext()
