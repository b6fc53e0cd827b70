"""The store contract, run against SQLite (a tmp file) and PostgreSQL (a fresh schema).

PostgreSQL is expected at ``postgresql://root@127.0.0.1:5432/test`` (override with
``TEST_POSTGRES_URL``). Without a server the PostgreSQL half fails: it is not optional.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from bot.domain import (
    Question,
    QuestionType,
    QuizStatus,
    ThreadKey,
    TurnKind,
    TurnStatus,
)
from store import PostgresStore, SqliteStore, Store, StoreError, open_store
from store.migrations import MIGRATIONS, statements

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")

KEY = ThreadKey(team="T1", channel="C1", thread_ts="1700000000.000100")
QUESTIONS = [
    Question(text="2 + 2?", type=QuestionType.MULTIPLE_CHOICE, choices=("3", "4", "5")),
    Question(text="Why?", type=QuestionType.FREE_RESPONSE),
    Question(text="3 * 3?", type=QuestionType.MULTIPLE_CHOICE, choices=("6", "9")),
]


@dataclass
class Backend:
    """One database; ``make()`` returns a new, unopened store on it (a second process)."""

    name: str
    make: Callable[[], Store]
    query: Callable[[str], Any]  # async: raw SQL -> list of tuples


def _sqlite_backend(path: Path) -> Backend:
    async def query(sql: str) -> list[tuple[Any, ...]]:
        async with aiosqlite.connect(path) as db:
            return [tuple(row) for row in await db.execute_fetchall(sql)]

    return Backend("sqlite", lambda: SqliteStore(path), query)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield _sqlite_backend(tmp_path / "data" / "tutorbot.db")
        return
    schema = f"test_store_{uuid.uuid4().hex[:12]}"

    async def query(sql: str) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    yield Backend("postgres", lambda: PostgresStore(PG_URL, schema=schema), query)
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    yield opened
    await opened.close()


async def _thread_id(store: Store, key: ThreadKey = KEY) -> int:
    return (await store.get_or_create_thread(key, "responses", "U1")).id


async def _open_quiz(store: Store, call_id: str = "call_1") -> tuple[int, int]:
    """(thread id, quiz id) of an OPEN quiz with three questions."""
    thread_id = await _thread_id(store)
    turn = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="quiz me", message_ts="1.1"
    )
    if turn is None:
        turn = await store.next_queued_turn(thread_id)
    assert turn is not None
    quiz = await store.create_quiz(
        turn_id=turn.id,
        thread_id=thread_id,
        call_id=call_id,
        title="Arithmetic",
        questions=QUESTIONS,
        status=QuizStatus.OPEN,
        channel=KEY.channel,
        remote_run_id="resp_1",
        student_id="U1",
    )
    return thread_id, quiz.id


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///tutorbot.db", SqliteStore, "tutorbot.db"),
        ("sqlite:///data/bot.db", SqliteStore, "data/bot.db"),
        ("sqlite:////abs/path.db", SqliteStore, "/abs/path.db"),
        ("sqlite://", SqliteStore, ":memory:"),
        ("sqlite:///:memory:", SqliteStore, ":memory:"),
        ("sqlite+aiosqlite:///x.db", SqliteStore, "x.db"),
        ("  sqlite:///tutorbot.db\n", SqliteStore, "tutorbot.db"),
        ("postgresql://u:p@db:5432/bot", PostgresStore, "postgresql://u:p@db:5432/bot"),
        ("postgres://u@db/bot", PostgresStore, "postgresql://u@db/bot"),
        ("postgresql+asyncpg://u@db/bot", PostgresStore, "postgresql://u@db/bot"),
        ("POSTGRESQL://u@db/bot", PostgresStore, "postgresql://u@db/bot"),
    ],
)
def test_open_store_parses_urls(url: str, kind: type, target: str) -> None:
    store = open_store(url)
    assert isinstance(store, kind)
    if isinstance(store, SqliteStore):
        assert store.path == target
    else:
        assert isinstance(store, PostgresStore)
        assert store.dsn == target


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@db/bot",
        "tutorbot.db",
        "",
        "sqlite://host/file.db",
        "sqlite:///file.db?mode=ro",
        "user:secret@db/bot",
    ],
)
def test_open_store_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL") as caught:
        open_store(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "secret" not in message


def test_migration_scripts_split_into_statements() -> None:
    assert statements("CREATE TABLE a (x INT);\nCREATE INDEX i ON a (x);\n") == [
        "CREATE TABLE a (x INT)",
        "CREATE INDEX i ON a (x)",
    ]
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions))


def test_invalid_postgres_schema_name() -> None:
    with pytest.raises(ValueError):
        PostgresStore(PG_URL, schema='x"; DROP TABLE y; --')


# -- lifecycle and migrations --------------------------------------------------------------


async def test_migrations_applied_once_and_reopen_is_a_no_op(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    await first.set_setting("assistant_id", "asst_1")
    await first.close()

    second = backend.make()
    await second.open()
    await second.open()  # opening twice is harmless
    assert await second.get_setting("assistant_id") == "asst_1"
    await second.close()

    rows = await backend.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [row[0] for row in rows] == [m.version for m in MIGRATIONS]


async def test_two_processes_migrating_at_once(backend: Backend) -> None:
    stores = [backend.make() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ids = await asyncio.gather(*(_thread_id(s) for s in stores))
        assert len(set(ids)) == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    rows = await backend.query("SELECT count(*) FROM schema_migrations")
    assert rows[0][0] == len(MIGRATIONS)


async def test_not_open_raises_store_error(backend: Backend) -> None:
    with pytest.raises(StoreError):
        await backend.make().get_setting("x")


def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.rmdir()


async def test_missing_database_file_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "deeper" / "tutorbot.db"
    store = SqliteStore(path)
    await store.open()
    await _thread_id(store)
    await store.close()
    await asyncio.to_thread(_delete_database, path)

    store = SqliteStore(path)
    await store.open()
    try:
        assert path.exists()
        assert await store.get_thread(KEY) is None
        assert await _thread_id(store) > 0
    finally:
        await store.close()


async def test_sqlite_memory_url_works() -> None:
    store = open_store("sqlite://")
    await store.open()
    try:
        await store.set_setting("k", "v")
        assert await store.get_setting("k") == "v"
    finally:
        await store.close()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    async with aiosqlite.connect(path) as db:
        rows = list(await db.execute_fetchall("PRAGMA journal_mode"))
        assert rows[0][0] == "wal"


# -- threads -------------------------------------------------------------------------------


async def test_threads(store: Store) -> None:
    assert await store.get_thread(KEY) is None
    created = await store.get_or_create_thread(KEY, "responses", "U1")
    assert created.key == KEY
    assert (created.runtime, created.remote_id, created.started_by) == ("responses", None, "U1")
    assert created.created_at.utcoffset() == timedelta(0)
    assert created.updated_at.utcoffset() == timedelta(0)

    again = await store.get_or_create_thread(KEY, "assistants", "U2")
    assert again.id == created.id
    assert (again.runtime, again.started_by) == ("responses", "U1")

    await store.set_thread_remote(created.id, "responses", "conv_1")
    fetched = await store.get_thread_by_id(created.id)
    assert fetched is not None
    assert fetched.remote_id == "conv_1"
    assert fetched.updated_at >= created.updated_at
    by_key = await store.get_thread(KEY)
    assert by_key is not None and by_key.id == created.id
    assert await store.get_thread_by_id(created.id + 1000) is None

    other = await store.get_or_create_thread(
        ThreadKey(KEY.team, KEY.channel, "other"), "responses", None
    )
    assert other.id != created.id and other.started_by is None


async def test_get_or_create_thread_concurrently(backend: Backend, store: Store) -> None:
    second = backend.make()
    await second.open()
    try:
        threads = await asyncio.gather(
            *(s.get_or_create_thread(KEY, "responses", "U1") for s in [store, second] * 5)
        )
    finally:
        await second.close()
    assert len({t.id for t in threads}) == 1


# -- leases --------------------------------------------------------------------------------


async def test_lease_contention_and_renewal(store: Store) -> None:
    thread_id = await _thread_id(store)
    assert await store.try_lock_thread(thread_id, "worker-a", 30)
    assert not await store.try_lock_thread(thread_id, "worker-b", 30)
    assert await store.try_lock_thread(thread_id, "worker-a", 30)  # renew

    await store.unlock_thread(thread_id, "worker-b")  # not the holder: no effect
    assert not await store.try_lock_thread(thread_id, "worker-b", 30)

    await store.unlock_thread(thread_id, "worker-a")
    assert await store.try_lock_thread(thread_id, "worker-b", 30)
    assert not await store.try_lock_thread(thread_id, "worker-a", 30)


async def test_lease_expires(store: Store) -> None:
    thread_id = await _thread_id(store)
    assert await store.try_lock_thread(thread_id, "worker-a", 0.05)
    assert not await store.try_lock_thread(thread_id, "worker-b", 0.05)
    await asyncio.sleep(0.1)
    assert await store.try_lock_thread(thread_id, "worker-b", 30)
    assert not await store.try_lock_thread(thread_id, "worker-a", 30)


async def test_lease_one_winner_across_processes(backend: Backend, store: Store) -> None:
    thread_id = await _thread_id(store)
    second = backend.make()
    await second.open()
    try:
        results = await asyncio.gather(
            *(s.try_lock_thread(thread_id, f"w{i}", 30) for i, s in enumerate([store, second] * 4))
        )
    finally:
        await second.close()
    assert sum(results) == 1


async def test_lease_on_missing_thread(store: Store) -> None:
    assert not await store.try_lock_thread(424242, "worker-a", 30)


# -- turns ---------------------------------------------------------------------------------


async def test_enqueue_dedupes_on_message_ts(store: Store) -> None:
    thread_id = await _thread_id(store)
    files = [{"id": "F1", "name": "a.png"}]
    turn = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="hi", message_ts="1.1", files=files
    )
    assert turn is not None
    assert (turn.status, turn.kind, turn.files, turn.attempts) == (
        TurnStatus.QUEUED,
        TurnKind.MESSAGE,
        files,
        0,
    )
    assert turn.created_at is not None and turn.created_at.utcoffset() == timedelta(0)
    dup = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="hi again", message_ts="1.1"
    )
    assert dup is None
    # Another thread may use the same ts.
    other = await _thread_id(store, ThreadKey("T1", "C2", "9.9"))
    assert await store.enqueue_turn(
        other, TurnKind.MESSAGE, user_id="U1", text="hi", message_ts="1.1"
    )


async def test_unknown_thread_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.enqueue_turn(424242, TurnKind.MESSAGE, user_id=None, text="x", message_ts="1")
    assert await _thread_id(store) > 0  # the store still works afterwards


async def test_cancelled_write_leaves_the_store_usable(store: Store) -> None:
    thread_id = await _thread_id(store)
    for n in range(20):
        task = asyncio.create_task(
            store.enqueue_turn(
                thread_id, TurnKind.MESSAGE, user_id=None, text="x", message_ts=f"c{n}"
            )
        )
        for _ in range(n % 4):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    turn = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id=None, text="x", message_ts="after"
    )
    assert turn is not None


async def test_enqueue_concurrent_duplicates(backend: Backend, store: Store) -> None:
    thread_id = await _thread_id(store)
    second = backend.make()
    await second.open()
    try:
        results = await asyncio.gather(
            *(
                s.enqueue_turn(thread_id, TurnKind.MESSAGE, user_id="U1", text="x", message_ts="5")
                for s in [store, second] * 4
            )
        )
    finally:
        await second.close()
    assert sum(r is not None for r in results) == 1


async def test_queue_order_updates_and_listing(store: Store) -> None:
    thread_id = await _thread_id(store)
    other_id = await _thread_id(store, ThreadKey("T1", "C2", "2.0"))
    assert await store.next_queued_turn(thread_id) is None
    assert await store.threads_with_queued_turns() == []

    turns = []
    for n, tid in enumerate([other_id, thread_id, thread_id, other_id]):
        turn = await store.enqueue_turn(
            tid, TurnKind.MESSAGE, user_id="U1", text=f"m{n}", message_ts=f"3.{n}"
        )
        assert turn is not None
        turns.append(turn)
    answers = await store.enqueue_turn(
        thread_id,
        TurnKind.QUIZ_ANSWERS,
        user_id=None,
        text="[]",
        message_ts=f"quiz:{turns[1].id}",
        parent_turn_id=turns[1].id,
    )
    assert answers is not None and answers.parent_turn_id == turns[1].id

    assert await store.threads_with_queued_turns() == [other_id, thread_id]
    first = await store.next_queued_turn(thread_id)
    assert first is not None and first.id == turns[1].id

    await asyncio.sleep(0.01)
    await store.update_turn(first.id, status=TurnStatus.RUNNING, remote_run_id="resp_1")
    await store.update_turn(first.id, attempts=2, status_message_ts="3.9")
    updated = await store.get_turn(first.id)
    assert updated is not None
    assert (updated.status, updated.remote_run_id, updated.attempts) == (
        TurnStatus.RUNNING,
        "resp_1",
        2,
    )
    assert updated.status_message_ts == "3.9" and updated.error is None
    assert first.updated_at is not None and updated.updated_at is not None
    assert updated.updated_at > first.updated_at
    await asyncio.sleep(0.01)
    await store.update_turn(first.id)  # nothing given: only updated_at moves
    touched = await store.get_turn(first.id)
    assert touched is not None and touched.updated_at is not None
    assert touched.updated_at > updated.updated_at
    assert touched.remote_run_id == "resp_1"

    second = await store.next_queued_turn(thread_id)
    assert second is not None and second.id == turns[2].id

    queued = await store.list_turns(statuses=[TurnStatus.QUEUED])
    assert [t.id for t in queued] == [turns[0].id, turns[2].id, turns[3].id, answers.id]
    mine = await store.list_turns(
        statuses=[TurnStatus.QUEUED, TurnStatus.RUNNING], thread_id=thread_id
    )
    assert [t.id for t in mine] == [turns[1].id, turns[2].id, answers.id]
    assert await store.list_turns(statuses=[]) == []
    assert await store.get_turn(999_999) is None

    await store.update_turn(turns[1].id, status=TurnStatus.FAILED, error="boom")
    failed = await store.get_turn(turns[1].id)
    assert failed is not None and (failed.status, failed.error) == (TurnStatus.FAILED, "boom")


# -- quizzes -------------------------------------------------------------------------------


async def test_create_quiz_is_idempotent(store: Store) -> None:
    thread_id, quiz_id = await _open_quiz(store)
    quiz = await store.get_quiz(quiz_id)
    assert quiz is not None
    assert quiz.questions == QUESTIONS
    assert quiz.answers == [None, None, None]
    assert (quiz.status, quiz.channel, quiz.remote_run_id, quiz.student_id) == (
        QuizStatus.OPEN,
        KEY.channel,
        "resp_1",
        "U1",
    )
    assert quiz.created_at is not None and quiz.created_at.utcoffset() == timedelta(0)

    again = await store.create_quiz(
        turn_id=quiz.turn_id,
        thread_id=thread_id,
        call_id="call_1",
        title="Different",
        questions=QUESTIONS[:1],
        status=QuizStatus.INVALID,
        channel=KEY.channel,
        remote_run_id="resp_2",
        student_id=None,
    )
    assert again.id == quiz_id and again.title == "Arithmetic" and len(again.answers) == 3

    invalid = await store.create_quiz(
        turn_id=quiz.turn_id,
        thread_id=thread_id,
        call_id="call_2",
        title="",
        questions=[],
        status=QuizStatus.INVALID,
        channel=KEY.channel,
        remote_run_id="resp_1",
        student_id="U1",
        error_output="no questions",
    )
    assert invalid.id != quiz_id
    assert (invalid.status, invalid.error_output, invalid.answers) == (
        QuizStatus.INVALID,
        "no questions",
        [],
    )


async def test_list_quizzes_and_message(store: Store) -> None:
    thread_id, first = await _open_quiz(store, "call_1")
    _, second = await _open_quiz(store, "call_2")
    await store.set_quiz_message(first, "7.7")
    quiz = await store.get_quiz(first)
    assert quiz is not None and quiz.message_ts == "7.7"
    await store.transition_quizzes([second], QuizStatus.SKIPPED, from_statuses=[QuizStatus.OPEN])

    everything = await store.list_quizzes()
    assert [q.id for q in everything] == [first, second]
    assert [q.id for q in await store.list_quizzes(thread_id=thread_id)] == [first, second]
    assert [q.id for q in await store.list_quizzes(turn_id=quiz.turn_id)] == [first, second]
    assert [q.id for q in await store.list_quizzes(remote_run_id="resp_1")] == [first, second]
    assert await store.list_quizzes(remote_run_id="resp_x") == []
    assert [q.id for q in await store.list_quizzes(statuses=[QuizStatus.OPEN])] == [first]
    both = await store.list_quizzes(
        thread_id=thread_id, statuses=[QuizStatus.OPEN, QuizStatus.SKIPPED]
    )
    assert [q.id for q in both] == [first, second]
    assert await store.list_quizzes(statuses=[]) == []
    assert await store.list_quizzes(thread_id=thread_id + 1000) == []


async def test_record_answer(store: Store) -> None:
    _, quiz_id = await _open_quiz(store)
    quiz = await store.record_answer(quiz_id, 1, "because")
    assert quiz is not None
    assert quiz.answers == [None, "because", None]
    assert quiz.status is QuizStatus.OPEN and not quiz.is_complete

    changed = await store.record_answer(quiz_id, 1, "because, really")
    assert changed is not None and changed.answers == [None, "because, really", None]

    assert await store.record_answer(quiz_id, 3, "out of range") is None
    assert await store.record_answer(quiz_id, -1, "negative") is None
    assert await store.record_answer(999_999, 0, "no such quiz") is None

    await store.record_answer(quiz_id, 0, "4")
    done = await store.record_answer(quiz_id, 2, "9")
    assert done is not None and done.is_complete and done.answers == ["4", "because, really", "9"]

    moved = await store.transition_quizzes(
        [quiz_id], QuizStatus.SUBMITTED, from_statuses=[QuizStatus.OPEN, QuizStatus.ANSWERED]
    )
    assert moved == [quiz_id]
    assert await store.record_answer(quiz_id, 0, "5") is None
    final = await store.get_quiz(quiz_id)
    assert final is not None and final.answers == ["4", "because, really", "9"]


async def test_concurrent_answers_are_not_lost(backend: Backend, store: Store) -> None:
    _, quiz_id = await _open_quiz(store)
    second = backend.make()
    await second.open()
    try:
        results = await asyncio.gather(
            store.record_answer(quiz_id, 0, "4"),
            second.record_answer(quiz_id, 1, "because"),
            store.record_answer(quiz_id, 2, "9"),
        )
    finally:
        await second.close()
    assert all(r is not None for r in results)
    quiz = await store.get_quiz(quiz_id)
    assert quiz is not None and quiz.answers == ["4", "because", "9"]


async def test_answer_races_submission(store: Store) -> None:
    _, quiz_id = await _open_quiz(store)
    answered, moved = await asyncio.gather(
        store.record_answer(quiz_id, 0, "4"),
        store.transition_quizzes([quiz_id], QuizStatus.SUBMITTED, from_statuses=[QuizStatus.OPEN]),
    )
    assert moved == [quiz_id]
    quiz = await store.get_quiz(quiz_id)
    assert quiz is not None and quiz.status is QuizStatus.SUBMITTED
    # Either the answer landed before the submission, or it was refused: never after.
    assert quiz.answers[0] == ("4" if answered is not None else None)


async def test_transition_quizzes_is_compare_and_set(store: Store) -> None:
    _, first = await _open_quiz(store, "call_1")
    _, second = await _open_quiz(store, "call_2")
    moved = await store.transition_quizzes(
        [second, first, 999_999], QuizStatus.ANSWERED, from_statuses=[QuizStatus.OPEN]
    )
    assert moved == [second, first]
    assert (
        await store.transition_quizzes(
            [first, second], QuizStatus.ANSWERED, from_statuses=[QuizStatus.OPEN]
        )
        == []
    )
    assert await store.transition_quizzes(
        [first], QuizStatus.SUBMITTED, from_statuses=[QuizStatus.ANSWERED]
    ) == [first]
    assert await store.transition_quizzes([], QuizStatus.SKIPPED, from_statuses=[]) == []
    statuses = {q.id: q.status for q in await store.list_quizzes()}
    assert statuses == {first: QuizStatus.SUBMITTED, second: QuizStatus.ANSWERED}


async def test_concurrent_transitions_have_one_winner(backend: Backend, store: Store) -> None:
    _, first = await _open_quiz(store, "call_1")
    _, second = await _open_quiz(store, "call_2")
    other = backend.make()
    await other.open()
    try:
        results = await asyncio.gather(
            *(
                s.transition_quizzes(
                    [first, second],
                    QuizStatus.SUBMITTED,
                    from_statuses=[QuizStatus.OPEN, QuizStatus.ANSWERED],
                )
                for s in [store, other] * 5
            )
        )
    finally:
        await other.close()
    winners = [r for r in results if r]
    assert winners == [[first, second]]


# -- files and settings --------------------------------------------------------------------


async def test_files(store: Store) -> None:
    thread_id = await _thread_id(store)
    assert await store.get_remote_file(thread_id, "F1") is None
    await store.remember_file(thread_id, "F1", "file_a")
    assert await store.get_remote_file(thread_id, "F1") == "file_a"
    await store.remember_file(thread_id, "F1", "file_b")
    assert await store.get_remote_file(thread_id, "F1") == "file_b"
    other = await _thread_id(store, ThreadKey("T1", "C9", "1.0"))
    assert await store.get_remote_file(other, "F1") is None


async def test_settings(store: Store) -> None:
    assert await store.get_setting("assistant_id") is None
    await store.set_setting("assistant_id", "asst_1")
    await store.set_setting("assistant_id", "asst_2")
    assert await store.get_setting("assistant_id") == "asst_2"


# -- SQLite under contention ---------------------------------------------------------------


async def test_two_sqlite_stores_on_one_file_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SqliteStore(path), SqliteStore(path)
    await asyncio.gather(first.open(), second.open())
    try:
        thread_id = await _thread_id(first)

        async def write(store: Store, n: int) -> None:
            await store.enqueue_turn(
                thread_id, TurnKind.MESSAGE, user_id="U1", text="x", message_ts=f"{n}"
            )
            await store.set_setting(f"k{n}", "v")
            await store.try_lock_thread(thread_id, f"w{n}", 0.001)

        await asyncio.gather(*(write(s, n) for n, s in enumerate([first, second] * 40)))
        queued = await second.list_turns(statuses=[TurnStatus.QUEUED])
        assert len(queued) == 80
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_sqlite_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store = SqliteStore(path)
    await store.open()
    holding = threading.Event()

    def hold_write_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO settings (key, value) VALUES ('other', 'process')")
            holding.set()
            time.sleep(0.3)
            conn.execute("COMMIT")
        finally:
            conn.close()

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        holder = asyncio.create_task(asyncio.to_thread(hold_write_lock))
        await asyncio.to_thread(holding.wait)
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        await store.set_setting("mine", "yes")
        waited = time.monotonic() - started
        ticker.cancel()
        await holder
        assert waited >= 0.1  # it really waited for the other writer
        assert ticks >= 5  # and the event loop kept running meanwhile
        assert await store.get_setting("other") == "process"
        assert await store.get_setting("mine") == "yes"
    finally:
        await store.close()
