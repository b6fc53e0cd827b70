"""The store contract, run through the one implementation on SQLite (a tmp file) and on
PostgreSQL (a fresh schema); see ``tests/databases.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

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
from store import (
    Fence,
    LeaseLost,
    NewMessage,
    Pool,
    SqlStore,
    Store,
    StoreError,
    open_store,
)
from store.dialects import PostgresDatabase, SqliteDatabase
from store.migrate import heads
from tests.databases import PG_URL, Backend, postgres_backend

KEY = ThreadKey(team="T1", channel="C1", thread_ts="1700000000.000100")
QUESTIONS = [
    Question(text="2 + 2?", type=QuestionType.MULTIPLE_CHOICE, choices=("3", "4", "5")),
    Question(text="Why?", type=QuestionType.FREE_RESPONSE),
    Question(text="3 * 3?", type=QuestionType.MULTIPLE_CHOICE, choices=("6", "9")),
]


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
        ("sqlite:///tutorbot.db", SqliteDatabase, "tutorbot.db"),
        ("sqlite:///data/bot.db", SqliteDatabase, "data/bot.db"),
        ("sqlite:////abs/path.db", SqliteDatabase, "/abs/path.db"),
        ("sqlite://", SqliteDatabase, ":memory:"),
        ("sqlite:///:memory:", SqliteDatabase, ":memory:"),
        ("sqlite+aiosqlite:///x.db", SqliteDatabase, "x.db"),
        ("  sqlite:///tutorbot.db\n", SqliteDatabase, "tutorbot.db"),
        ("postgresql://u:p@db:5432/bot", PostgresDatabase, "postgresql://u:p@db:5432/bot"),
        ("postgres://u@db/bot", PostgresDatabase, "postgresql://u@db/bot"),
        ("postgresql+asyncpg://u@db/bot", PostgresDatabase, "postgresql://u@db/bot"),
        ("POSTGRESQL://u@db/bot", PostgresDatabase, "postgresql://u@db/bot"),
        (
            "postgres://u@db/bot?sslmode=require&search_path=s1",
            PostgresDatabase,
            "postgresql://u@db/bot?sslmode=require&search_path=s1",
        ),
    ],
)
def test_open_store_parses_urls(url: str, kind: type, target: str) -> None:
    database = open_store(url).database
    assert isinstance(database, kind)
    if isinstance(database, SqliteDatabase):
        assert database.path == target
    else:
        assert isinstance(database, PostgresDatabase)
        assert database.dsn == target


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


def test_invalid_postgres_schema_name() -> None:
    with pytest.raises(ValueError):
        SqlStore.postgres(PG_URL, schema='x"; DROP TABLE y; --')


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

    rows = await backend.query("SELECT version_num FROM alembic_version")
    assert [row[0] for row in rows] == heads()


async def test_two_processes_migrating_at_once(backend: Backend) -> None:
    stores = [backend.make() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ids = await asyncio.gather(*(_thread_id(s) for s in stores))
        assert len(set(ids)) == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    rows = await backend.query("SELECT version_num FROM alembic_version")
    assert [row[0] for row in rows] == heads()


async def test_not_open_raises_store_error(backend: Backend) -> None:
    with pytest.raises(StoreError):
        await backend.make().get_setting("x")


def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.rmdir()


async def test_missing_database_file_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "deeper" / "tutorbot.db"
    store = SqlStore.sqlite(path)
    await store.open()
    await _thread_id(store)
    await store.close()
    await asyncio.to_thread(_delete_database, path)

    store = SqlStore.sqlite(path)
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


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SqlStore.sqlite(path)
    await store.open()
    try:
        async with store.engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
            }
    finally:
        await store.close()
    # synchronous 1 is NORMAL
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 5000,
        "synchronous": 1,
        "foreign_keys": 1,
    }


async def test_postgres_schema_is_created_when_missing() -> None:
    schema = f"test_store_new_{uuid.uuid4().hex[:12]}"
    store = SqlStore.postgres(PG_URL, schema=schema)
    try:
        await store.open()
        await store.set_setting("k", "v")
        await store.close()
        conn = await asyncpg.connect(PG_URL)
        try:
            value = await conn.fetchval(f'SELECT value FROM "{schema}".settings')
        finally:
            await conn.close()
        assert value == "v"
    finally:
        await store.close()
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_database_url_opens_that_database(backend: Backend) -> None:
    """``open_store(DATABASE_URL)``: on PostgreSQL ``?search_path=`` picks the schema."""
    store = open_store(backend.url)
    await store.open()
    try:
        await store.set_setting("k", "from the url")
    finally:
        await store.close()
    assert await backend.query("SELECT value FROM settings") == [("from the url",)]


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


# -- chat runtime conversations -------------------------------------------------------------


async def test_chat_messages_keep_order_runs_and_conversations(store: Store) -> None:
    assert await store.chat_messages("chat_a") == []
    await store.append_chat_messages("chat_a", "run_1", [{"role": "user", "content": "hi"}])
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}
    await store.append_chat_messages(
        "chat_a", "run_1", [{"role": "assistant", "content": None, "tool_calls": [call]}]
    )
    await store.append_chat_messages("chat_b", "run_9", [{"role": "user", "content": "other"}])
    await store.append_chat_messages(
        "chat_a",
        "run_2",
        [
            {"role": "tool", "tool_call_id": "c1", "content": "é ✓"},
            {"role": "user", "content": "next"},
        ],
    )
    await store.append_chat_messages("chat_a", "run_3", [])
    records = await store.chat_messages("chat_a")
    assert [(r.run_id, r.message["role"]) for r in records] == [
        ("run_1", "user"),
        ("run_1", "assistant"),
        ("run_2", "tool"),
        ("run_2", "user"),
    ]
    assert records[1].message["tool_calls"] == [call]
    assert records[2].message["content"] == "é ✓"
    [other] = await store.chat_messages("chat_b")
    assert other.message == {"role": "user", "content": "other"}


async def test_chat_messages_are_shared_between_processes(backend: Backend, store: Store) -> None:
    second = backend.make()
    await second.open()
    try:
        await store.append_chat_messages("chat_x", "run_1", [{"role": "user", "content": "a"}])
        await second.append_chat_messages("chat_x", "run_2", [{"role": "user", "content": "b"}])
        seen = [r.message["content"] for r in await store.chat_messages("chat_x")]
        assert seen == ["a", "b"]
    finally:
        await second.close()


async def test_chat_documents_keep_the_first_text(store: Store) -> None:
    assert await store.get_chat_document("doc_1") is None
    await store.put_chat_document("doc_1", '--- begin file "a.pdf" ---')
    await store.put_chat_document("doc_1", "something else")
    assert await store.get_chat_document("doc_1") == '--- begin file "a.pdf" ---'


# -- SQLite under contention ---------------------------------------------------------------


async def test_two_sqlite_stores_on_one_file_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SqlStore.sqlite(path), SqlStore.sqlite(path)
    await asyncio.gather(first.open(), second.open())
    try:
        thread_id = await _thread_id(first)

        async def write(store: Store, n: int) -> None:
            await store.enqueue_turn(
                thread_id, TurnKind.MESSAGE, user_id="U1", text="x", message_ts=f"{n}"
            )
            await store.set_setting(f"k{n}", "v")
            await store.heartbeat(f"w{n}", 0.001)
            await store.claim_thread(thread_id, f"w{n}")

        await asyncio.gather(*(write(s, n) for n, s in enumerate([first, second] * 40)))
        queued = await second.list_turns(statuses=[TurnStatus.QUEUED])
        assert len(queued) == 80
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_sqlite_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store = SqlStore.sqlite(path)
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


# -- pools ---------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_smallest_pool_serves_everything_at_once(database: str, tmp_path: Path) -> None:
    """One connection (no overflow): concurrent reads, writes and transactions queue for it
    instead of waiting on the pool until it gives up."""
    if database == "sqlite":
        store = SqlStore.sqlite(tmp_path / "small.db", pool=Pool(size=1, max_overflow=0))
        async with _opened(store):
            await _everything_at_once(store)
        return
    async with postgres_backend("test_small_pool") as backend:
        schema = backend.url.rsplit("=", 1)[1]
        store = SqlStore.postgres(PG_URL, schema=schema, pool=Pool(size=1, max_overflow=0))
        async with _opened(store):
            await _everything_at_once(store)


@asynccontextmanager
async def _opened(store: SqlStore) -> AsyncIterator[SqlStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _everything_at_once(store: Store) -> None:
    _, quiz_id = await _open_quiz(store)
    thread_id = await _thread_id(store)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(store.record_answer(quiz_id, n % 3, f"a{n}") for n in range(6)),
            *(store.get_thread_by_id(thread_id) for _ in range(6)),
            *(store.set_setting(f"k{n}", "v") for n in range(6)),
        ),
        timeout=20,
    )
    assert all(r is not None for r in results[:12])
    quiz = await store.get_quiz(quiz_id)
    assert quiz is not None and quiz.answers == ["a3", "a4", "a5"]


async def test_postgres_connection_dropped_while_idle_is_replaced() -> None:
    """A server restart or a proxy drops pooled connections: the next statement pings the
    idle connection, finds it dead and takes a new one instead of failing."""
    application = f"tutorbot_test_{uuid.uuid4().hex[:8]}"
    async with postgres_backend("test_idle") as backend:
        schema = backend.url.rsplit("=", 1)[1]
        database = PostgresDatabase(
            PG_URL,
            schema=schema,
            server_settings={"application_name": application},
            ping_after_idle=0.0,
        )
        store = SqlStore(database)
        async with _opened(store):
            await store.set_setting("k", "v")
            admin = await asyncpg.connect(PG_URL)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = $1",
                    application,
                )
            finally:
                await admin.close()
            assert killed >= 1
            assert await store.get_setting("k") == "v"
            await store.set_setting("k", "w")
            assert await store.get_setting("k") == "w"


# -- several processes: heartbeats, leases with fencing, the order of turns ----------------


async def test_a_live_processs_lease_is_kept_and_a_dead_ones_taken(store: Store) -> None:
    thread_id = await _thread_id(store)
    await store.heartbeat("worker-a", 30)
    await store.heartbeat("worker-b", 30)
    epoch = await store.claim_thread(thread_id, "worker-a")
    assert epoch is not None
    assert await store.claim_thread(thread_id, "worker-b") is None  # a is alive
    again = await store.claim_thread(thread_id, "worker-a")  # ours: a new epoch
    assert again == epoch + 1
    await store.heartbeat("worker-a", 0.05)  # a stops renewing…
    await asyncio.sleep(0.15)
    taken = await store.claim_thread(thread_id, "worker-b")  # …and is taken over
    assert taken == epoch + 2


async def test_taking_a_thread_gives_its_row_with_the_new_epoch(store: Store) -> None:
    thread_id = await _thread_id(store)
    await store.heartbeat("worker-a", 30)
    taken = await store.take_thread(thread_id, "worker-a")
    assert taken is not None
    epoch, thread = taken
    assert thread.id == thread_id and thread.key.thread_ts
    assert await store.claim_thread(thread_id, "worker-a") == epoch + 1  # ours already
    await store.heartbeat("worker-b", 30)
    assert await store.take_thread(thread_id, "worker-b") is None  # a live process holds it


async def test_a_process_that_never_beat_holds_nothing(store: Store) -> None:
    thread_id = await _thread_id(store)
    assert await store.claim_thread(thread_id, "ghost") is not None
    await store.heartbeat("worker-b", 30)
    assert await store.claim_thread(thread_id, "worker-b") is not None


async def test_fenced_writes_stop_once_the_lease_is_lost(store: Store) -> None:
    thread_id = await _thread_id(store)
    turn = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="hi", message_ts="1.1"
    )
    assert turn is not None
    await store.heartbeat("worker-a", 0.05)
    epoch_a = await store.claim_thread(thread_id, "worker-a")
    assert epoch_a is not None
    fence_a = Fence(thread_id, "worker-a", epoch_a)
    await store.update_turn(turn.id, status=TurnStatus.RUNNING, fence=fence_a)
    await asyncio.sleep(0.15)
    await store.heartbeat("worker-b", 30)
    epoch_b = await store.claim_thread(thread_id, "worker-b")
    assert epoch_b is not None
    with pytest.raises(LeaseLost):
        await store.update_turn(turn.id, status=TurnStatus.COMPLETED, fence=fence_a)
    with pytest.raises(LeaseLost):
        await store.record_run_started(turn.id, "run_a", thread_id=thread_id, fence=fence_a)
    with pytest.raises(LeaseLost):
        await store.set_thread_remote(thread_id, "responses", "conv_a", fence=fence_a)
    fence_b = Fence(thread_id, "worker-b", epoch_b)
    await store.set_thread_remote(thread_id, "responses", "conv_b", fence=fence_b)
    await store.update_turn(turn.id, remote_run_id="run_b", fence=fence_b)
    fresh = await store.get_turn(turn.id)
    assert fresh is not None
    assert (fresh.status, fresh.remote_run_id) == (TurnStatus.RUNNING, "run_b")
    thread = await store.get_thread_by_id(thread_id)
    assert thread is not None and thread.remote_id == "conv_b"


async def test_release_waits_for_queued_work_and_retiring_frees_leases(store: Store) -> None:
    thread_id = await _thread_id(store)
    await store.heartbeat("worker-a", 30)
    epoch = await store.claim_thread(thread_id, "worker-a")
    assert epoch is not None
    fence = Fence(thread_id, "worker-a", epoch)
    turn = await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="hi", message_ts="1.1"
    )
    assert turn is not None
    assert not await store.release_thread(fence)  # a turn waits: keep working
    await store.update_turn(turn.id, status=TurnStatus.COMPLETED, fence=fence)
    assert await store.release_thread(fence)
    assert await store.claim_thread(thread_id, "worker-a") == epoch + 1
    await store.heartbeat("worker-b", 30)
    assert await store.claim_thread(thread_id, "worker-b") is None
    await store.retire_worker("worker-a")
    assert await store.claim_thread(thread_id, "worker-b") is not None


async def test_threads_needing_work_skip_live_leases(store: Store) -> None:
    busy, free, dead, console = [
        await _thread_id(store, ThreadKey(team, "C1", ts))
        for team, ts in (("T1", "1.0"), ("T1", "2.0"), ("T1", "3.0"), ("console", "4.0"))
    ]
    for thread_id, ts in ((busy, "1.1"), (free, "2.1"), (dead, "3.1"), (console, "4.1")):
        await store.enqueue_turn(thread_id, TurnKind.MESSAGE, user_id="U", text="t", message_ts=ts)
    await store.heartbeat("alive", 30)
    await store.heartbeat("dying", 0.05)
    assert await store.claim_thread(busy, "alive") is not None
    assert await store.claim_thread(dead, "dying") is not None
    await asyncio.sleep(0.15)
    needing = dict(await store.threads_needing_work("alive", exclude_teams=["console"]))
    assert console not in needing and needing[free] is False and needing[dead] is False
    assert needing[busy] is True, "a thread this process holds is listed as its own"
    others = dict(await store.threads_needing_work("other", exclude_teams=["console"]))
    assert busy not in others and {free, dead} <= set(others)


async def test_next_turn_resumes_first_then_follows_the_students_order(store: Store) -> None:
    thread_id = await _thread_id(store)
    for ts in ("5.3", "5.1", "5.2"):  # delivered out of order
        await store.enqueue_turn(
            thread_id,
            TurnKind.MESSAGE,
            user_id="U1",
            text=ts,
            message_ts=ts,
            order_key=f"{float(ts):020.6f}",
        )
    turns = await store.next_turns(thread_id)
    assert [t.text for t in turns] == ["5.1", "5.2", "5.3"]
    await store.update_turn(turns[2].id, status=TurnStatus.RUNNING)
    nxt = await store.next_turn(thread_id)
    assert nxt is not None and nxt.text == "5.3"  # in flight: resumed before the queue


async def test_record_messages_in_one_transaction(store: Store) -> None:
    key = ThreadKey("T1", "C9", "9.0")
    messages = [
        NewMessage(key, "responses", "U1", "start", "9.0", order_key="9.0"),
        NewMessage(key, "responses", "U1", "more", "9.1", order_key="9.1", create_thread=False),
        NewMessage(key, "responses", "U1", "start", "9.0", order_key="9.0"),  # a retry
        NewMessage(
            ThreadKey("T1", "C9", "8.0"), "responses", "U2", "x", "8.5", "8.5", create_thread=False
        ),
    ]
    recorded = await store.record_messages(messages)
    first, second, duplicate, orphan = recorded
    assert first.thread is not None and first.turn is not None
    assert second.thread == first.thread and second.turn is not None
    assert duplicate.thread is not None and duplicate.turn is None
    assert orphan.thread is None and orphan.turn is None
    assert [t.text for t in await store.next_turns(first.thread.id)] == ["start", "more"]


async def test_seen_request_and_ping(store: Store) -> None:
    assert await store.seen_request("trigger-1")
    assert not await store.seen_request("trigger-1")
    assert await store.seen_request("trigger-2")
    await store.ping()
