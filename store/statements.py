"""Every statement the store runs, built once per dialect and reused.

Building a statement once means SQLAlchemy only derives its cache key on each execution and
finds the compiled SQL in the engine's cache. Values are bound by name at execution; the
dialect shows only in ``insert_for`` (upserts) and in the clocks of ``store.dialects``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store.dialects import db_now, insert_for, lease_clock, lease_until
from store.schema import (
    Id,
    Json,
    chat_documents,
    chat_messages,
    files,
    quizzes,
    seen_requests,
    settings,
    threads,
    turns,
    workers,
)

_b = sa.bindparam

# Turns a thread still has to work: in flight (resumed first) or queued.
IN_FLIGHT = ("running", "posting")
ACTIVE = (*IN_FLIGHT, "queued")


def _fence_holds() -> sa.ColumnElement[bool]:
    """True when no fence is given, or the thread's lease is still the fence's."""
    owner = _b("fence_owner", type_=sa.Text)
    return sa.or_(
        owner.is_(None),
        sa.exists().where(
            threads.c.id == _b("fence_thread", type_=Id),
            threads.c.lock_owner == owner,
            threads.c.lock_epoch == _b("fence_epoch", type_=sa.Integer),
        ),
    )


def _lease_holds() -> sa.ColumnElement[bool]:
    """``_fence_holds`` for a statement on ``threads`` itself (the row is the fence's)."""
    owner = _b("fence_owner", type_=sa.Text)
    return sa.or_(
        owner.is_(None),
        sa.and_(
            threads.c.lock_owner == owner,
            threads.c.lock_epoch == _b("fence_epoch", type_=sa.Integer),
        ),
    )


def _open_quiz(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
    """A column of the thread's latest quiz still waiting for its student (else NULL)."""
    return (
        sa.select(column)
        .where(
            quizzes.c.thread_id == turns.c.thread_id,
            quizzes.c.status.in_(("open", "answered")),
            quizzes.c.student_id.is_not(None),
        )
        .order_by(quizzes.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _owner_alive() -> sa.Exists:
    """The thread's lease owner is a live process (its heartbeat has not run out)."""
    return sa.exists().where(
        workers.c.owner == threads.c.lock_owner, workers.c.alive_until > lease_clock()
    )


def _coalesce(name: str, column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """``column`` set to the bound value, or left as it is when that value is NULL."""
    return sa.func.coalesce(_b(name, type_=column.type), column)


@dataclass(frozen=True, slots=True)
class Statements:
    # threads
    get_thread: sa.Select[Any]
    get_thread_by_id: sa.Select[Any]
    create_thread: sa.Insert
    set_thread_remote: sa.Update
    # turns
    enqueue_turn: sa.Insert
    get_turn: sa.Select[Any]
    next_queued_turn: sa.Select[Any]
    update_turn: sa.Update
    turns_by_status: sa.Select[Any]
    thread_turns_by_status: sa.Select[Any]
    threads_with_turns_in: sa.Select[Any]
    set_turn_run: sa.Update
    complete_parked_turns: sa.Update
    next_turns: sa.Select[Any]
    threads_needing_work: sa.Select[Any]
    # several processes
    heartbeat: sa.Insert
    retire_worker: sa.Delete
    free_leases_of: sa.Update
    claim_thread: sa.Update
    release_thread: sa.Update
    seen_request: sa.Insert
    ping: sa.Select[Any]
    # quizzes
    create_quiz: sa.Insert
    get_quiz: sa.Select[Any]
    get_quiz_by_call: sa.Select[Any]
    lock_quiz: sa.Select[Any]
    set_quiz_answers: sa.Update
    set_quiz_message: sa.Update
    transition_quizzes: sa.Update
    transition_quiz: sa.Update
    # chat runtime
    chat_messages: sa.Select[Any]
    append_chat_message: sa.Insert
    get_chat_document: sa.Select[Any]
    put_chat_document: sa.Insert
    # files and settings
    get_remote_file: sa.Select[Any]
    remember_file: sa.Insert
    get_setting: sa.Select[Any]
    set_setting: sa.Insert


@functools.cache
def statements_for(dialect: str) -> Statements:
    insert = insert_for(dialect)

    create_thread = insert(threads).values(created_at=db_now(), updated_at=db_now())
    enqueue_turn = insert(turns).values(created_at=db_now(), updated_at=db_now())
    create_quiz = insert(quizzes).values(created_at=db_now(), updated_at=db_now())
    remember_file = insert(files).values(created_at=db_now())
    set_setting = insert(settings)
    put_chat_document = insert(chat_documents).values(created_at=db_now())
    heartbeat = insert(workers).values(
        owner=_b("owner"), alive_until=lease_until(_b("ttl", type_=sa.Float)), started_at=db_now()
    )
    seen_request = insert(seen_requests).values(key=_b("key"), created_at=db_now())

    return Statements(
        get_thread=sa.select(threads).where(
            threads.c.team == _b("team"),
            threads.c.channel == _b("channel"),
            threads.c.thread_ts == _b("thread_ts"),
        ),
        get_thread_by_id=sa.select(threads).where(threads.c.id == _b("thread_id")),
        create_thread=create_thread.on_conflict_do_nothing(
            index_elements=["team", "channel", "thread_ts"]
        ).returning(*threads.c),
        set_thread_remote=sa.update(threads)
        .where(threads.c.id == _b("thread_id"), _lease_holds())
        .values(runtime=_b("new_runtime"), remote_id=_b("new_remote_id"), updated_at=db_now())
        .returning(threads.c.id),
        enqueue_turn=enqueue_turn.on_conflict_do_nothing(
            index_elements=["thread_id", "message_ts"]
        ).returning(*turns.c),
        get_turn=sa.select(turns).where(turns.c.id == _b("turn_id")),
        next_queued_turn=sa.select(turns)
        .where(turns.c.thread_id == _b("thread_id"), turns.c.status == _b("status"))
        .order_by(turns.c.id)
        .limit(1),
        update_turn=sa.update(turns)
        .where(turns.c.id == _b("turn_id"))
        .values(
            status=_coalesce("new_status", turns.c.status),
            remote_run_id=_coalesce("new_remote_run_id", turns.c.remote_run_id),
            status_message_ts=_coalesce("new_status_message_ts", turns.c.status_message_ts),
            error=_coalesce("new_error", turns.c.error),
            attempts=_coalesce("new_attempts", turns.c.attempts),
            progress=_coalesce("new_progress", turns.c.progress),
            updated_at=db_now(),
        )
        .where(_fence_holds())
        .returning(turns.c.id),
        set_turn_run=sa.update(turns)
        .where(turns.c.id == _b("turn_id"), _fence_holds())
        .values(remote_run_id=_b("new_remote_run_id"), updated_at=db_now())
        .returning(turns.c.id),
        next_turns=sa.select(
            turns,
            _open_quiz(quizzes.c.student_id).label("quiz_student"),
            _open_quiz(quizzes.c.created_at).label("quiz_since"),
        )
        .where(turns.c.thread_id == _b("thread_id"), turns.c.status.in_(ACTIVE))
        .order_by(
            sa.case((turns.c.status == "queued", 1), else_=0),
            sa.func.coalesce(turns.c.order_key, ""),
            turns.c.id,
        )
        .limit(_b("limit", type_=sa.Integer)),
        threads_needing_work=sa.select(turns.c.thread_id, threads.c.lock_owner)
        .join(threads, threads.c.id == turns.c.thread_id)
        .where(
            turns.c.status.in_(ACTIVE),
            sa.or_(
                threads.c.lock_owner.is_(None),
                threads.c.lock_owner == _b("owner"),
                ~_owner_alive(),
            ),
            threads.c.team.notin_(_b("exclude_teams", expanding=True)),
        )
        .group_by(turns.c.thread_id, threads.c.lock_owner)
        .order_by(sa.func.min(turns.c.id))
        .limit(500),
        heartbeat=heartbeat.on_conflict_do_update(
            index_elements=["owner"],
            set_={"alive_until": lease_until(_b("ttl", type_=sa.Float))},
        ),
        retire_worker=sa.delete(workers).where(workers.c.owner == _b("owner")),
        free_leases_of=sa.update(threads)
        .where(threads.c.lock_owner == _b("owner"))
        .values(lock_owner=None),
        claim_thread=sa.update(threads)
        .where(
            threads.c.id == _b("thread_id"),
            sa.or_(
                threads.c.lock_owner.is_(None),
                threads.c.lock_owner == _b("owner"),
                ~_owner_alive(),
            ),
        )
        .values(lock_owner=_b("owner"), lock_epoch=threads.c.lock_epoch + 1)
        .returning(*threads.c),  # the worker needs the thread too: no second read
        release_thread=sa.update(threads)
        .where(
            threads.c.id == _b("thread_id"),
            threads.c.lock_owner == _b("owner"),
            threads.c.lock_epoch == _b("epoch"),
            ~sa.exists().where(turns.c.thread_id == threads.c.id, turns.c.status.in_(ACTIVE)),
        )
        .values(lock_owner=None)
        .returning(threads.c.id),
        seen_request=seen_request.on_conflict_do_nothing(index_elements=["key"]).returning(
            seen_requests.c.key
        ),
        ping=sa.select(sa.literal(1)),
        complete_parked_turns=sa.update(turns)
        .where(
            turns.c.id.in_(_b("turn_ids", expanding=True)),
            turns.c.status == _b("from_status"),
        )
        .values(status=_b("to_status"), updated_at=db_now()),
        turns_by_status=sa.select(turns)
        .where(turns.c.status.in_(_b("statuses", expanding=True)))
        .order_by(turns.c.id),
        thread_turns_by_status=sa.select(turns)
        .where(
            turns.c.status.in_(_b("statuses", expanding=True)),
            turns.c.thread_id == _b("thread_id"),
        )
        .order_by(turns.c.id),
        threads_with_turns_in=sa.select(turns.c.thread_id)
        .where(turns.c.status == _b("status"))
        .group_by(turns.c.thread_id)
        .order_by(sa.func.min(turns.c.id)),
        create_quiz=create_quiz.on_conflict_do_nothing(
            index_elements=["thread_id", "call_id"]
        ).returning(*quizzes.c),
        get_quiz=sa.select(quizzes).where(quizzes.c.id == _b("quiz_id")),
        get_quiz_by_call=sa.select(quizzes).where(
            quizzes.c.thread_id == _b("thread_id"), quizzes.c.call_id == _b("call_id")
        ),
        # FOR UPDATE on PostgreSQL; SQLite ignores it (BEGIN IMMEDIATE already locks).
        lock_quiz=sa.select(quizzes.c.status, quizzes.c.answers)
        .where(quizzes.c.id == _b("quiz_id"))
        .with_for_update(),
        set_quiz_answers=sa.update(quizzes)
        .where(quizzes.c.id == _b("quiz_id"))
        .values(answers=_b("new_answers", type_=Json), updated_at=db_now())
        .returning(*quizzes.c),
        set_quiz_message=sa.update(quizzes)
        .where(quizzes.c.id == _b("quiz_id"))
        .values(message_ts=_b("new_message_ts"), updated_at=db_now()),
        transition_quizzes=sa.update(quizzes)
        .where(
            quizzes.c.id.in_(_b("quiz_ids", expanding=True)),
            quizzes.c.status.in_(_b("from_statuses", expanding=True)),
        )
        .values(status=_b("to_status"), updated_at=db_now())
        .returning(quizzes.c.id),
        transition_quiz=sa.update(quizzes)
        .where(
            quizzes.c.id == _b("quiz_id"),
            quizzes.c.status.in_(_b("from_statuses", expanding=True)),
        )
        .values(status=_b("to_status"), updated_at=db_now())
        .returning(quizzes.c.id),
        chat_messages=sa.select(chat_messages.c.run_id, chat_messages.c.message)
        .where(chat_messages.c.conversation == _b("conversation"))
        .order_by(chat_messages.c.id),
        append_chat_message=sa.insert(chat_messages).values(created_at=db_now()),
        get_chat_document=sa.select(chat_documents.c.text).where(
            chat_documents.c.id == _b("document_id")
        ),
        put_chat_document=put_chat_document.on_conflict_do_nothing(index_elements=["id"]),
        get_remote_file=sa.select(files.c.remote_file_id).where(
            files.c.thread_id == _b("thread_id"), files.c.slack_file_id == _b("slack_file_id")
        ),
        remember_file=remember_file.on_conflict_do_update(
            index_elements=["thread_id", "slack_file_id"],
            set_={"remote_file_id": remember_file.excluded.remote_file_id},
        ),
        get_setting=sa.select(settings.c.value).where(settings.c.key == _b("key")),
        set_setting=set_setting.on_conflict_do_update(
            index_elements=["key"], set_={"value": set_setting.excluded.value}
        ),
    )


@functools.cache
def list_quizzes_statement(
    thread: bool, turn: bool, remote_run: bool, statuses: bool
) -> sa.Select[Any]:
    """Quizzes matching the filters that are given, oldest first (one statement per shape)."""
    statement = sa.select(quizzes).order_by(quizzes.c.id)
    if thread:
        statement = statement.where(quizzes.c.thread_id == _b("thread_id"))
    if turn:
        statement = statement.where(quizzes.c.turn_id == _b("turn_id"))
    if remote_run:
        statement = statement.where(quizzes.c.remote_run_id == _b("remote_run_id"))
    if statuses:
        statement = statement.where(quizzes.c.status.in_(_b("statuses", expanding=True)))
    return statement
