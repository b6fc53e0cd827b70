"""Feedback votes, a channel's numbers and a student's page, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from bot.domain import Question, QuestionType, QuizStatus, ThreadKey, Turn, TurnKind, TurnStatus
from store import SqlStore
from store.feedback import feedback_statements
from tests.databases import Backend

QUESTIONS = [Question(text="2 + 2?", type=QuestionType.MULTIPLE_CHOICE, choices=("3", "4"))]


async def _turn(
    store: SqlStore,
    key: ThreadKey,
    ts: str,
    *,
    text: str = "a question",
    user: str = "U1",
    status: TurnStatus = TurnStatus.COMPLETED,
    kind: TurnKind = TurnKind.MESSAGE,
    parent: int | None = None,
) -> Turn:
    thread = await store.get_or_create_thread(key, "responses", user)
    turn = await store.enqueue_turn(
        thread.id, kind, user_id=user, text=text, message_ts=ts, parent_turn_id=parent
    )
    assert turn is not None
    if status is not TurnStatus.QUEUED:
        await store.update_turn(turn.id, status=status)
    return turn


async def _quiz(
    store: SqlStore,
    turn: Turn,
    call_id: str,
    *,
    status: QuizStatus,
    student: str = "U1",
    title: str = "Warm-up",
    posted: bool = True,
) -> int:
    quiz = await store.create_quiz(
        turn_id=turn.id,
        thread_id=turn.thread_id,
        call_id=call_id,
        title=title,
        questions=QUESTIONS,
        status=status,
        channel="C1",
        remote_run_id="resp_1",
        student_id=student,
    )
    if posted:
        await store.set_quiz_message(quiz.id, f"9.{quiz.id}")
    return quiz.id


# -- votes -----------------------------------------------------------------------------------


async def test_one_vote_per_user_per_answer_and_the_latest_wins(
    store: SqlStore, backend: Backend
) -> None:
    turn = await _turn(store, ThreadKey("T1", "C1", "1.1"), "1.1")
    first = await store.record_vote("T1", "C1", turn.id, "U1", helpful=True)
    assert first is not None and first.changed and first.previous is None
    assert first.kind is TurnKind.MESSAGE and first.parent_turn_id is None
    # A double click: the same vote again changes nothing.
    again = await store.record_vote("T1", "C1", turn.id, "U1", helpful=True)
    assert again is not None and not again.changed and again.previous is True
    changed = await store.record_vote("T1", "C1", turn.id, "U1", helpful=False)
    assert changed is not None and changed.changed and changed.previous is True
    other = await store.record_vote("T1", "C1", turn.id, "U2", helpful=True)
    assert other is not None and other.changed and other.previous is None
    rows = await backend.query("SELECT user_id, value FROM feedback_votes ORDER BY user_id")
    assert rows == [("U1", "bad"), ("U2", "good")]


async def test_a_vote_on_a_turn_of_another_channel_or_none_is_refused(
    store: SqlStore, backend: Backend
) -> None:
    turn = await _turn(store, ThreadKey("T1", "C1", "1.1"), "1.1")
    assert await store.record_vote("T1", "C2", turn.id, "U1", helpful=True) is None
    assert await store.record_vote("T2", "C1", turn.id, "U1", helpful=True) is None
    assert await store.record_vote("T1", "C1", turn.id + 1000, "U1", helpful=True) is None
    assert await backend.query("SELECT count(*) FROM feedback_votes") == [(0,)]


async def test_a_vote_on_quiz_answers_names_the_turn_that_posted_the_quiz(store: SqlStore) -> None:
    key = ThreadKey("T1", "C1", "1.1")
    asked = await _turn(store, key, "1.1")
    answers = await _turn(store, key, "quiz:1", kind=TurnKind.QUIZ_ANSWERS, parent=asked.id)
    vote = await store.record_vote("T1", "C1", answers.id, "U1", helpful=True)
    assert vote is not None
    assert vote.kind is TurnKind.QUIZ_ANSWERS and vote.parent_turn_id == asked.id


# -- a channel's numbers ---------------------------------------------------------------------


async def test_channel_activity_counts_the_period_in_that_channel_only(
    store: SqlStore, backend: Backend
) -> None:
    here = ThreadKey("T1", "C1", "1.1")
    answered = await _turn(store, here, "1.1")
    await _turn(store, here, "1.2", status=TurnStatus.FAILED)
    await _turn(store, here, "1.3", status=TurnStatus.EXPIRED)
    await _turn(store, here, "1.4", status=TurnStatus.CANCELLED)  # stopped: not a failure
    await _turn(store, here, "1.5", status=TurnStatus.QUEUED)
    quizzed = await _turn(store, ThreadKey("T1", "C1", "2.1"), "2.1")
    await _turn(store, here, "quiz:9", kind=TurnKind.QUIZ_ANSWERS, parent=quizzed.id)
    await _quiz(store, quizzed, "call_1", status=QuizStatus.SUBMITTED)
    await _quiz(store, quizzed, "call_2", status=QuizStatus.EXPIRED)  # resent: submitted too
    await _quiz(store, quizzed, "call_3", status=QuizStatus.OPEN)
    await _quiz(store, quizzed, "call_4", status=QuizStatus.INVALID, posted=False)
    await store.record_vote("T1", "C1", answered.id, "U1", helpful=True)
    await store.record_vote("T1", "C1", answered.id, "U2", helpful=True)
    await store.record_vote("T1", "C1", quizzed.id, "U1", helpful=False)
    # Elsewhere: another channel, another workspace's channel of the same id.
    elsewhere = await _turn(store, ThreadKey("T1", "C2", "3.1"), "3.1")
    await store.record_vote("T1", "C2", elsewhere.id, "U1", helpful=False)
    await _turn(store, ThreadKey("T2", "C1", "4.1"), "4.1", status=TurnStatus.FAILED)
    # Before the period: an old answered question, and an old vote.
    old = await _turn(store, here, "1.6")
    await store.record_vote("T1", "C1", old.id, "U3", helpful=False)
    long_ago = "2020-01-01T00:00:00.000000+00:00"
    await backend.execute(
        [
            f"UPDATE turns SET created_at = '{long_ago}' WHERE id = {old.id}",
            f"UPDATE feedback_votes SET voted_at = '{long_ago}' WHERE turn_id = {old.id}",
        ]
    )

    since = datetime.now(UTC) - timedelta(days=7)
    activity = await store.channel_activity("T1", "C1", since)
    assert activity.questions_answered == 2  # 1.1 and 2.1; quiz answers are not questions
    assert activity.failed_answers == 2
    assert activity.quizzes_posted == 3
    assert activity.quizzes_submitted == 2
    assert (activity.thumbs_up, activity.thumbs_down) == (2, 1)
    empty = await store.channel_activity("T1", "C9", since)
    assert empty.questions_answered == empty.thumbs_up == empty.quizzes_posted == 0


# -- a student's page ------------------------------------------------------------------------


async def test_student_page_latest_twenty_of_each_newest_first(
    store: SqlStore, backend: Backend
) -> None:
    statements = []
    stamp = "2026-11-01T10:00:00.000000+00:00"
    for i in range(1, 1201):  # threads 1..1200, every 3rd one U1's, the others U2's
        user = "U1" if i % 3 == 0 else "U2"
        statements.append(
            "INSERT INTO threads (id, team, channel, thread_ts, runtime, started_by, lock_epoch,"
            f" created_at, updated_at) VALUES ({i}, 'T1', 'C1', '{i}.0', 'responses', '{user}',"
            f" 0, '{stamp}', '{stamp}')"
        )
        for j, kind in ((1, "message"), (2, "message")):
            turn_id = i * 10 + j
            statements.append(
                "INSERT INTO turns (id, thread_id, kind, status, user_id, text, message_ts,"
                f" files, attempts, created_at, updated_at) VALUES ({turn_id}, {i}, '{kind}',"
                f" 'completed', '{user}', 'question {i}.{j}', '{i}.{j}', '[]', 0,"
                f" '2026-11-0{j}T10:00:00.000000+00:00', '{stamp}')"
            )
        status = "invalid" if i % 7 == 0 else ("submitted" if i % 2 else "open")
        statements.append(
            "INSERT INTO quizzes (id, turn_id, thread_id, call_id, title, questions, answers,"
            " status, channel, message_ts, student_id, created_at, updated_at) VALUES"
            f" ({i}, {i * 10 + 1}, {i}, 'call_{i}', 'Quiz {i}',"
            ' \'[{"text": "2 + 2?", "type": "MULTIPLE_CHOICE", "choices": ["3", "4"]}]\','
            f" '[\"4\"]', '{status}', 'C1', '9.{i}', '{user}', '{stamp}', '{stamp}')"
        )
    if backend.name == "postgres":  # explicit ids: move the identities past them
        statements += [
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100000)"
            for table in ("threads", "turns", "quizzes")
        ]
    await backend.execute(statements)
    if backend.name == "postgres":
        await backend.execute(["ANALYZE threads", "ANALYZE turns", "ANALYZE quizzes"])
    # Another workspace's thread by a user of the same id is not theirs.
    await _turn(store, ThreadKey("T2", "C1", "5.5"), "5.5", user="U1")

    page = await store.student_page("T1", "U1")
    # Measured, not asserted: a page and a channel's week over 1,200 threads, 2,400 turns.
    started = time.perf_counter()
    for _ in range(20):
        await store.student_page("T1", "U1")
    page_ms = (time.perf_counter() - started) / 20 * 1000
    started = time.perf_counter()
    for _ in range(20):
        await store.channel_activity("T1", "C1", datetime(2026, 10, 1, tzinfo=UTC))
    stats_ms = (time.perf_counter() - started) / 20 * 1000
    print(f"\n{backend.name}: student_page {page_ms:.1f} ms, channel_activity {stats_ms:.1f} ms")
    assert [c.key.thread_ts for c in page.conversations] == [
        f"{i}.0" for i in range(1200, 0, -1) if i % 3 == 0
    ][:20]
    first = page.conversations[0]
    assert first.key == ThreadKey("T1", "C1", "1200.0")
    assert first.title == "question 1200.1"
    assert first.last_activity == datetime(2026, 11, 2, 10, tzinfo=UTC)
    expected = [i for i in range(1200, 0, -1) if i % 3 == 0 and i % 7][:20]
    assert [q.id for q in page.quizzes] == expected
    assert page.quizzes[0].title == f"Quiz {expected[0]}"
    assert page.quizzes[0].answers == ["4"]
    assert page.quizzes[0].status is QuizStatus.OPEN
    assert (await store.student_page("T1", "U9")).conversations == []


def _plan_sql(statement: sa.Select[object], params: dict[str, object]) -> str:
    compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": False})
    sql = str(compiled)
    values = {**compiled.params, **params}
    for name in compiled.positiontup or ():
        value = values[name]
        sql = sql.replace("?", repr(value) if isinstance(value, str) else str(value), 1)
    return sql


# The plan is read from SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans depend on its
# statistics (the timings test prints both).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_student_page_and_votes_are_indexed_queries(
    store: SqlStore, backend: Backend
) -> None:
    sql = feedback_statements("sqlite")
    params: dict[str, object] = {"team": "T1", "user_id": "U1", "limit": 20}
    threads_plan = await backend.query(
        "EXPLAIN QUERY PLAN " + _plan_sql(sql.started_threads, params)
    )
    quizzes_plan = await backend.query(
        "EXPLAIN QUERY PLAN " + _plan_sql(sql.student_quizzes, params)
    )
    vote_plan = await backend.query(
        "EXPLAIN QUERY PLAN "
        + _plan_sql(sql.vote_target, {**params, "turn_id": 1, "channel": "C1"})
    )
    threads_text = " ".join(str(row[-1]) for row in threads_plan)
    quizzes_text = " ".join(str(row[-1]) for row in quizzes_plan)
    vote_text = " ".join(str(row[-1]) for row in vote_plan)
    assert "USING INDEX threads_started_by" in threads_text, threads_text
    assert "TEMP B-TREE" not in threads_text, threads_text  # no sort of every thread
    assert "USING INDEX quizzes_student" in quizzes_text, quizzes_text
    assert "TEMP B-TREE" not in quizzes_text, quizzes_text
    assert "SCAN" not in vote_text.replace("SCAN CONSTANT", ""), vote_text
