"""Migrations: the Alembic history, the schema module against it, and databases made by the
store before Alembic, upgraded in place on SQLite and PostgreSQL with nothing lost."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.domain import (
    Question,
    QuestionType,
    QuizStatus,
    ThreadKey,
    TurnKind,
    TurnStatus,
)
from store import SqlStore, StoreError
from store.migrate import LEGACY_TABLE, heads
from store.schema import metadata
from tests.databases import PG_URL, Backend
from tests.unit import legacy_schema

FIRST = ThreadKey(team="T1", channel="C1", thread_ts="1700000000.000100")
SECOND = ThreadKey(team="T1", channel="C2", thread_ts="1700000001.000200")
QUESTIONS = [
    Question(text="2 + 2?", type=QuestionType.MULTIPLE_CHOICE, choices=("3", "4", "5")),
    Question(text="Why?", type=QuestionType.FREE_RESPONSE),
]


def test_history_has_one_head() -> None:
    assert len(heads()) == 1


def _legacy_database(dialect: str) -> list[str]:
    """Today's V1 schema with a bit of everything in it, as the old store wrote rows."""
    sqlite = dialect == "sqlite"

    def stamp(value: str) -> str:
        return f"'{value}'" if sqlite else f"'{value}'::timestamptz"

    def json(value: str) -> str:
        return f"'{value}'" if sqlite else f"'{value}'::jsonb"

    created, updated = (
        stamp("2026-06-01T08:00:00.123456+00:00"),
        stamp("2026-06-01T08:30:00.000000+00:00"),
    )
    expired_lease = stamp("2026-06-01T09:00:00.000000+00:00")
    no_files, one_file = json("[]"), json('[{"id": "F1", "name": "a.png"}]')
    answers = json('["4", null]')
    questions = (
        '[{"text": "2 + 2?", "type": "MULTIPLE_CHOICE", "choices": ["3", "4", "5"]}, '
        '{"text": "Why?", "type": "FREE_RESPONSE", "choices": []}]'
    )
    thread_columns = (
        "team, channel, thread_ts, runtime, remote_id, started_by, lock_owner,"
        " lock_expires_at, created_at, updated_at"
    )
    turn_columns = (
        "thread_id, kind, status, user_id, text, message_ts, remote_run_id,"
        " status_message_ts, files, attempts, error, parent_turn_id, created_at, updated_at"
    )
    rows = [
        f"INSERT INTO threads ({thread_columns}) VALUES ('T1', 'C1', '1700000000.000100',"
        f" 'responses', 'conv_1', 'U1', 'worker-old', {expired_lease}, {created}, {updated})",
        f"INSERT INTO threads ({thread_columns}) VALUES ('T1', 'C2', '1700000001.000200',"
        f" 'assistants', 'thread_abc', NULL, NULL, NULL, {created}, {created})",
        f"INSERT INTO turns ({turn_columns}) VALUES (1, 'message', 'completed', 'U1', 'hi',"
        f" '1700000000.000100', 'resp_1', '1700000000.000200',"
        f" {one_file}, 1, NULL, NULL, {created}, {updated})",
        f"INSERT INTO turns ({turn_columns}) VALUES (1, 'message', 'needs_tool_outputs', 'U1',"
        f" 'quiz me', '1700000002.000100', 'resp_2', NULL, {no_files}, 0, NULL, NULL,"
        f" {created}, {updated})",
        f"INSERT INTO turns ({turn_columns}) VALUES (1, 'quiz_answers', 'queued', NULL, '[]',"
        f" 'quiz:resp_2', NULL, NULL, {no_files}, 0, NULL, 2, {created}, {created})",
        f"INSERT INTO turns ({turn_columns}) VALUES (2, 'message', 'failed', 'U2', 'x',"
        f" '1700000001.000200', NULL, NULL, {no_files}, 3, 'boom', NULL, {created},"
        f" {updated})",
        "INSERT INTO quizzes (turn_id, thread_id, call_id, title, questions, answers, status,"
        " channel, message_ts, remote_run_id, student_id, error_output, created_at,"
        f" updated_at) VALUES (2, 1, 'call_1', 'Arithmetic', {json(questions)},"
        f" {answers}, 'open', 'C1', '1700000002.000300', 'resp_2', 'U1', NULL,"
        f" {created}, {updated})",
        "INSERT INTO files (thread_id, slack_file_id, remote_file_id, created_at)"
        f" VALUES (1, 'F1', 'file_a', {created})",
        "INSERT INTO settings (key, value) VALUES ('assistant_id', 'asst_1')",
    ]
    schema = legacy_schema.SQLITE if sqlite else legacy_schema.POSTGRES
    return [*schema, *rows]


async def test_database_of_the_store_before_alembic_upgrades_in_place(backend: Backend) -> None:
    await backend.execute(_legacy_database(backend.name))
    store = backend.make()
    await store.open()
    try:
        first = await store.get_thread(FIRST)
        assert first is not None
        assert (first.id, first.runtime, first.remote_id, first.started_by) == (
            1,
            "responses",
            "conv_1",
            "U1",
        )
        assert first.created_at == datetime(2026, 6, 1, 8, 0, 0, 123456, tzinfo=UTC)
        assert first.updated_at == datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
        second = await store.get_thread_by_id(2)
        assert second is not None and second.key == SECOND
        assert (second.runtime, second.remote_id, second.started_by) == (
            "assistants",
            "thread_abc",
            None,
        )

        done = await store.get_turn(1)
        assert done is not None
        assert (done.kind, done.status, done.text, done.attempts) == (
            TurnKind.MESSAGE,
            TurnStatus.COMPLETED,
            "hi",
            1,
        )
        assert (done.remote_run_id, done.status_message_ts) == ("resp_1", "1700000000.000200")
        assert done.files == [{"id": "F1", "name": "a.png"}]
        failed = await store.get_turn(4)
        assert failed is not None
        assert (failed.status, failed.error, failed.attempts) == (TurnStatus.FAILED, "boom", 3)
        [queued] = await store.list_turns(statuses=[TurnStatus.QUEUED])
        assert (queued.id, queued.kind, queued.parent_turn_id) == (3, TurnKind.QUIZ_ANSWERS, 2)
        assert await store.threads_with_queued_turns() == [1]
        next_turn = await store.next_queued_turn(1)
        assert next_turn is not None and next_turn.id == 3
        parked = await store.list_turns(statuses=[TurnStatus.NEEDS_TOOL_OUTPUTS], thread_id=1)
        assert [t.id for t in parked] == [2]

        [quiz] = await store.list_quizzes(remote_run_id="resp_2")
        assert (quiz.id, quiz.turn_id, quiz.call_id, quiz.title) == (1, 2, "call_1", "Arithmetic")
        assert quiz.questions == QUESTIONS
        assert quiz.answers == ["4", None]
        assert (quiz.status, quiz.message_ts, quiz.student_id) == (
            QuizStatus.OPEN,
            "1700000002.000300",
            "U1",
        )
        answered = await store.record_answer(1, 1, "because")
        assert answered is not None and answered.answers == ["4", "because"]

        assert await store.get_remote_file(1, "F1") == "file_a"
        assert await store.get_setting("assistant_id") == "asst_1"

        # The old lease's owner is no live process: the thread can be taken.
        assert await store.claim_thread(1, "worker-new") is not None
        # New rows carry on from the old ids.
        third = await store.get_or_create_thread(ThreadKey("T1", "C3", "9.9"), "responses", None)
        assert third.id == 3
        turn = await store.enqueue_turn(
            2, TurnKind.MESSAGE, user_id="U2", text="again", message_ts="1700000005.000100"
        )
        assert turn is not None and turn.id == 5
    finally:
        await store.close()

    assert await backend.query("SELECT version_num FROM alembic_version") == [(heads()[0],)]
    assert await backend.query(f"SELECT version FROM {LEGACY_TABLE}") == [(1,)]
    again = backend.make()
    await again.open()  # stamped once: nothing left to do
    try:
        assert await again.get_setting("assistant_id") == "asst_1"
    finally:
        await again.close()


async def test_unknown_pre_alembic_version_is_refused(backend: Backend) -> None:
    statements = _legacy_database(backend.name)
    await backend.execute([*statements, f"UPDATE {LEGACY_TABLE} SET version = 2"])
    store = backend.make()
    with pytest.raises(StoreError, match="pre-Alembic schema versions"):
        await store.open()
    assert await backend.query(f"SELECT count(*) FROM {LEGACY_TABLE}") == [(1,)]


async def test_database_from_newer_code_is_left_alone(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A rolled-back deploy: the database is at a revision this code does not know."""
    store = backend.make()
    await store.open()
    await store.set_setting("k", "v")
    await store.close()
    await backend.execute(["UPDATE alembic_version SET version_num = 'ffff_from_the_future'"])
    again = backend.make()
    with caplog.at_level(logging.WARNING, logger="store.migrate"):
        await again.open()
    try:
        assert await again.get_setting("k") == "v"
    finally:
        await again.close()
    assert "newer than this code knows" in caplog.text
    assert await backend.query("SELECT version_num FROM alembic_version") == [
        ("ffff_from_the_future",)
    ]


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [
        diff
        for diff in compare_metadata(context, metadata)
        if not (diff[0] == "remove_table" and diff[1].name == LEGACY_TABLE)
    ]


async def test_schema_module_matches_the_migrations(backend: Backend) -> None:
    """``store.schema`` and ``alembic/versions`` describe the same tables (autogenerate
    finds nothing to do): a new table needs both a ``Table`` and a revision."""
    store = backend.make()
    await store.open()
    try:
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await store.close()


TABLES = ("threads", "turns", "quizzes", "files", "settings")


def _describe(connection: sa.Connection) -> dict[str, Any]:
    """Columns, keys, foreign keys and indexes of the store's tables, as the database sees
    them (SQLite's own PRAGMAs: SQLAlchemy does not reflect ON DELETE of an inline
    ``REFERENCES``, which is how the old store declared them)."""
    if connection.dialect.name == "sqlite":
        described: dict[str, Any] = {}
        for table in TABLES:
            pragma = connection.exec_driver_sql
            indexes = {}
            for row in pragma(f"PRAGMA index_list({table})"):
                columns = [c[2] for c in pragma(f"PRAGMA index_info('{row[1]}')")]
                name = row[1] if not row[1].startswith("sqlite_autoindex") else "auto"
                indexes[(name, tuple(columns))] = bool(row[2])
            described[table] = {
                # A key column counts as NOT NULL: the old DDL left that out (SQLite then
                # lets a TEXT key hold NULL, an INTEGER one becomes a new rowid); the store
                # never wrote a NULL key.
                "columns": [
                    (name, kind, bool(notnull or pk), default, pk)
                    for _, name, kind, notnull, default, pk in pragma(f"PRAGMA table_info({table})")
                ],
                "foreign keys": sorted(
                    tuple(r[2:]) for r in pragma(f"PRAGMA foreign_key_list({table})")
                ),
                "indexes": indexes,
            }
        return described
    inspector = sa.inspect(connection)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], bool(c.get("identity")))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign keys": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"], str(f["options"]))
                for f in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table)
            ),
        }
        for table in TABLES
    }


async def test_baseline_revision_is_the_schema_of_the_store_before_alembic(
    backend: Backend, tmp_path: Path
) -> None:
    """Stamping a legacy database with the baseline is honest: the baseline revision makes
    the same tables, keys, foreign keys and indexes as the old store did."""
    await backend.execute(_legacy_database(backend.name))
    legacy = backend.make()
    await legacy.open()
    try:
        async with legacy.engine.connect() as connection:
            old = await connection.run_sync(_describe)
    finally:
        await legacy.close()

    if backend.name == "sqlite":
        fresh = SqlStore.sqlite(tmp_path / "fresh.db")
        await fresh.open()
    else:
        fresh_schema = f"test_fresh_{uuid.uuid4().hex[:12]}"
        fresh = SqlStore.postgres(PG_URL, schema=fresh_schema)
        await fresh.open()
    try:
        async with fresh.engine.connect() as connection:
            new = await connection.run_sync(_describe)
            if backend.name == "postgres":
                await connection.exec_driver_sql(f'DROP SCHEMA "{fresh_schema}" CASCADE')
                await connection.commit()
    finally:
        await fresh.close()
    assert new == old
