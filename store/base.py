"""The persistence interface. Only ``store/`` contains SQL; everything above speaks this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


class StoreError(Exception):
    """A persistence failure that is not the caller's fault (connection, schema)."""


class LeaseLost(Exception):
    """The thread's lease is no longer the writer's (another process took it over): the
    write was not done, and the writer must stop working the thread."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A thread's lease as a worker holds it: fenced writes check it in the same statement."""

    thread_id: int
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A student's message to record as a QUEUED turn (``record_messages``)."""

    key: ThreadKey
    runtime: str
    user_id: str | None
    text: str
    message_ts: str
    order_key: str
    files: Sequence[dict[str, Any]] = ()
    # Mentions and DMs start a conversation; other messages only continue one.
    create_thread: bool = True


@dataclass(frozen=True, slots=True)
class NextWork:
    """A thread's turns in the order to work them, and the quiz (if any) still waiting for
    its student there (``student``, ``since``): other people's messages wait for it."""

    turns: list[Turn]
    quiz_student: str | None
    quiz_since: datetime | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of a ``NewMessage``."""

    thread: Thread | None  # None: no such thread, and the message does not start one
    turn: Turn | None  # None: already recorded (a retried or doubled delivery), or no thread


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One stored message of a chat-runtime conversation and the run that added it."""

    run_id: str
    message: dict[str, Any]  # a Chat Completions message (plus the runtime's own notes)


@dataclass(frozen=True, slots=True)
class ViewedChannel:
    """The channel a student was viewing when they opened the tutor: its id, and its name
    when Slack gave one."""

    channel: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedVote:
    """A 👍 / 👎 as the store took it: ``changed`` is False for the same vote again (a
    double click); ``previous`` is the user's earlier vote (True: 👍), if any. ``kind`` and
    ``parent_turn_id`` say which turn's trace the answer belongs to (a quiz's answers
    continue the trace of the turn that posted the quiz)."""

    turn_id: int
    changed: bool
    previous: bool | None
    kind: TurnKind
    parent_turn_id: int | None


@dataclass(frozen=True, slots=True)
class ChannelActivity:
    """A channel's numbers over a period (``/tutor stats``)."""

    questions_answered: int
    failed_answers: int
    quizzes_posted: int
    quizzes_submitted: int
    thumbs_up: int
    thumbs_down: int


@dataclass(frozen=True, slots=True)
class StartedThread:
    """A conversation a student started: where it is, its first question, its last message."""

    key: ThreadKey
    title: str
    last_activity: datetime


@dataclass(frozen=True, slots=True)
class StudentPage:
    """A student's latest conversations and quizzes, newest first (the Home tab)."""

    conversations: list[StartedThread]
    quizzes: list[Quiz]


class Store(Protocol):
    """Async persistence for threads, turns, quizzes, files, settings and the chat
    runtime's conversations.

    Implemented once, by ``store.sql.SqlStore`` (SQLAlchemy Core on SQLite or PostgreSQL),
    which applies pending Alembic migrations in ``open()``.
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
        self, thread_id: int, runtime: str, remote_id: str | None, *, fence: Fence | None = None
    ) -> None:
        """The model-side thread of a Slack thread; with ``fence``, refused (``LeaseLost``)
        once the thread's lease is no longer the fence's."""

    # -- several processes: heartbeats, leases with fencing ------------------------------

    async def heartbeat(self, owner: str, ttl_seconds: float) -> None:
        """This process is alive for ``ttl_seconds`` more (its leases hold that long)."""

    async def retire_worker(self, owner: str) -> None:
        """A clean shutdown: the process's leases are free at once."""

    async def claim_thread(self, thread_id: int, owner: str) -> int | None:
        """Take the thread's lease — free, ours already, or held by a process that is no
        longer alive — with a new epoch (returned); None while a live process holds it."""

    async def take_thread(self, thread_id: int, owner: str) -> tuple[int, Thread] | None:
        """``claim_thread``, with the thread as it is now (the lease's epoch, the thread)."""

    async def release_thread(self, fence: Fence) -> bool:
        """Give the lease up unless turns wait in the thread; False: keep working (or the
        lease was lost meanwhile: the next fenced write says so)."""

    async def threads_needing_work(
        self, owner: str, *, exclude_teams: Sequence[str] = ()
    ) -> list[tuple[int, bool]]:
        """Threads with turns queued or in flight whose lease is free, whose owner died, or
        that ``owner`` itself holds (its worker there ended on an error): ``(thread_id,
        held by owner)``."""

    async def next_turns(self, thread_id: int, *, limit: int = 10) -> list[Turn]:
        """The thread's turns in the order they are to be worked (see ``next_turn``)."""

    async def next_work(self, thread_id: int, *, limit: int = 10) -> NextWork:
        """``next_turns`` and the thread's open quiz, in one query."""

    async def next_turn(self, thread_id: int) -> Turn | None:
        """The thread's turn to work next: one in flight (resumed) before any queued; among
        queued, the earliest by ``order_key`` (the student's message ts)."""

    async def record_messages(self, messages: Sequence[NewMessage]) -> list[Recorded]:
        """Record many messages in one transaction (a burst acks fast), threads created
        where asked; one ``Recorded`` per message, in order."""

    async def seen_request(self, key: str) -> bool:
        """True the first time ``key`` is seen (e.g. a slash command's ``trigger_id``)."""

    async def ping(self) -> None:
        """A trivial round trip: raises ``StoreError`` while the database is unreachable."""

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
        progress: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Set the given fields (None leaves a field as it is). With ``fence``, only while
        that lease holds (else ``LeaseLost``)."""

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
        """One transaction (fenced like ``update_turn``): the turn's run id; the thread's
        (runtime, remote id) when it was created with the run; the quizzes the run's input
        closed (compare-and-set, see ``transition_quizzes``); the turns those quizzes
        parked, completed when they were NEEDS_TOOL_OUTPUTS. Returns the quizzes moved."""

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

    # -- chat runtime conversations ------------------------------------------------------

    async def chat_messages(self, conversation: str) -> list[ChatRecord]:
        """Every stored message of a conversation, oldest first."""

    async def append_chat_messages(
        self, conversation: str, run_id: str, messages: Sequence[dict[str, Any]]
    ) -> None:
        """Add messages at the end of a conversation, in order, in one transaction."""

    async def get_chat_document(self, document_id: str) -> str | None: ...

    async def put_chat_document(self, document_id: str, text: str) -> None:
        """Keep a shared file's text; a second put of the same id keeps the first."""

    # -- the agent app -------------------------------------------------------------------

    async def greet_once(self, team: str, user_id: str) -> bool:
        """True the first time a student is greeted in ``team`` (later opens: False)."""

    async def forget_greeting(self, team: str, user_id: str) -> None:
        """The greeting did not reach the student: ``greet_once`` is True again."""

    async def set_viewing_context(
        self, team: str, channel: str, thread_ts: str, viewed: ViewedChannel
    ) -> None:
        """What the student views now, for one thread (or a whole DM: ``thread_ts`` "")."""

    async def name_viewing_context(
        self, team: str, channel: str, thread_ts: str, viewed: ViewedChannel
    ) -> None:
        """Add the name of the channel viewed, if the student still views that one."""

    async def viewing_context(
        self, team: str, channel: str, thread_ts: str
    ) -> ViewedChannel | None:
        """The thread's own context, else its DM's; None when the student shared none."""

    async def request_stop(self, thread_id: int) -> list[Turn]:
        """Mark the thread's turns in flight as stopped by the student; returns those
        newly marked (with their run ids, for cancelling at the model service)."""

    async def stop_requested(self, turn_id: int) -> bool: ...

    # -- feedback, stats, the Home tab ---------------------------------------------------

    async def record_vote(
        self, team: str, channel: str, turn_id: int, user_id: str, *, helpful: bool
    ) -> RecordedVote | None:
        """``user_id``'s 👍 (``helpful``) or 👎 on turn ``turn_id`` of ``channel``: one vote
        per user per answer, the latest wins. None when the channel has no such turn."""

    async def channel_activity(self, team: str, channel: str, since: datetime) -> ChannelActivity:
        """A channel's questions answered, failed answers, quizzes shown and submitted, and
        👍 / 👎 since ``since``."""

    async def student_page(self, team: str, user_id: str, *, limit: int = 20) -> StudentPage:
        """The latest ``limit`` conversations the student started and quizzes they were
        given in ``team``, newest first."""
