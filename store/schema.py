"""The tables, as SQLAlchemy Core ``Table``s: the one description of the schema.

Queries (``store/statements.py``) are written against these; Alembic revisions
(``store/alembic/versions``) create and change the real tables. A new table is a ``Table``
here plus one revision; ``tests/unit/test_migrations.py`` fails when the two disagree.

Column types that differ by database are variants, named here once: timestamps are
``TIMESTAMPTZ`` on PostgreSQL and fixed-width UTC ISO text on SQLite (so SQLite compares
them as strings), JSON is ``JSONB`` on PostgreSQL and text on SQLite, ids are ``BIGINT``
identities on PostgreSQL and ``INTEGER PRIMARY KEY AUTOINCREMENT`` rowids on SQLite.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.dialects.postgresql import JSONB


class IsoTimestamp(sa.TypeDecorator[datetime]):
    """SQLite: an aware datetime as fixed-width UTC ISO text (``…T12:00:05.123456+00:00``)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else to_iso_text(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is UTC:  # as the store writes them
            return moment
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class JsonText(sa.TypeDecorator[Any]):
    """SQLite: a JSON document as text."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


def to_iso_text(moment: datetime) -> str:
    """The SQLite text form of a timestamp; fixed width, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


Timestamp = sa.DateTime(timezone=True).with_variant(IsoTimestamp(), "sqlite")
Json = JSONB().with_variant(JsonText(), "sqlite")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Constraints are unnamed, as the store before Alembic declared them: PostgreSQL names them
# itself (``threads_team_channel_thread_ts_key``, ``turns_thread_id_fkey``…), SQLite keeps
# them nameless. A revision that changes one uses PostgreSQL's name, and batch mode
# (which rebuilds the table) on SQLite.
metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    return sa.Column("id", Id, sa.Identity(), primary_key=True)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text, nullable=nullable)


def _stamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, Timestamp, nullable=nullable)


def _ref(name: str, target: str, *, on_delete: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, Id, sa.ForeignKey(target, ondelete=on_delete), nullable=nullable)


threads = sa.Table(
    "threads",
    metadata,
    _id(),
    _text("team"),
    _text("channel"),
    _text("thread_ts"),
    _text("runtime"),
    _text("remote_id", nullable=True),
    _text("started_by", nullable=True),
    # The work lease: the process that works the thread (alive while its ``workers`` row
    # is), and an epoch that every claim increments, so a process that lost the lease
    # cannot write for the thread any more (its writes name the old epoch: fencing).
    _text("lock_owner", nullable=True),
    _stamp("lock_expires_at", nullable=True),  # unused since revision 0004
    sa.Column("lock_epoch", sa.Integer, nullable=False, server_default=sa.text("0")),
    _stamp("created_at"),
    _stamp("updated_at"),
    sa.UniqueConstraint("team", "channel", "thread_ts"),
    # The Home tab: a student's latest conversations.
    sa.Index("threads_started_by", "team", "started_by", "id"),
    sqlite_autoincrement=True,
)

turns = sa.Table(
    "turns",
    metadata,
    _id(),
    _ref("thread_id", "threads.id", on_delete="CASCADE"),
    _text("kind"),
    _text("status"),
    _text("user_id", nullable=True),
    _text("text"),
    _text("message_ts"),
    _text("remote_run_id", nullable=True),
    _text("status_message_ts", nullable=True),
    sa.Column("files", Json, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    _text("error", nullable=True),
    _ref("parent_turn_id", "turns.id", on_delete="SET NULL", nullable=True),
    _stamp("created_at"),
    _stamp("updated_at"),
    # Where a streamed answer stands in Slack (``bot.slack.answer.Progress`` as JSON text).
    _text("progress", nullable=True),
    # A thread's turns run in this order: the student's Slack message ts (zero-padded so
    # text order is time order), whichever process received it first.
    _text("order_key", nullable=True),
    # The student pressed Stop (seen by whichever process works the turn).
    _stamp("stop_requested_at", nullable=True),
    sa.UniqueConstraint("thread_id", "message_ts"),
    sa.Index("turns_status_thread", "status", "thread_id"),
    sa.Index("turns_thread_order", "thread_id", "status", "order_key"),
    sqlite_autoincrement=True,
)

quizzes = sa.Table(
    "quizzes",
    metadata,
    _id(),
    _ref("turn_id", "turns.id", on_delete="CASCADE"),
    _ref("thread_id", "threads.id", on_delete="CASCADE"),
    _text("call_id"),
    _text("title"),
    sa.Column("questions", Json, nullable=False),
    sa.Column("answers", Json, nullable=False),
    _text("status"),
    _text("channel"),
    _text("message_ts", nullable=True),
    _text("remote_run_id", nullable=True),
    _text("student_id", nullable=True),
    _text("error_output", nullable=True),
    _stamp("created_at"),
    _stamp("updated_at"),
    sa.UniqueConstraint("thread_id", "call_id"),
    sa.Index("quizzes_turn", "turn_id"),
    sa.Index("quizzes_remote_run", "remote_run_id"),
    # The Home tab: a student's latest quizzes.
    sa.Index("quizzes_student", "student_id", "id"),
    sqlite_autoincrement=True,
)

files = sa.Table(
    "files",
    metadata,
    _id(),
    _ref("thread_id", "threads.id", on_delete="CASCADE"),
    _text("slack_file_id"),
    _text("remote_file_id"),
    _stamp("created_at"),
    sa.UniqueConstraint("thread_id", "slack_file_id"),
    sqlite_autoincrement=True,
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    _text("value"),
)

# The chat runtime's conversations: the server keeps nothing, so the messages live here.
chat_messages = sa.Table(
    "chat_messages",
    metadata,
    _id(),
    _text("conversation"),
    _text("run_id"),
    sa.Column("message", Json, nullable=False),
    _stamp("created_at"),
    sa.Index("chat_messages_conversation", "conversation", "id"),
    sqlite_autoincrement=True,
)

# Text the chat runtime read from a shared file (its stand-in for a file store).
chat_documents = sa.Table(
    "chat_documents",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _text("text"),
    _stamp("created_at"),
)

# Live bot processes: each renews its row every second; the leases of a process whose row
# is past ``alive_until`` (it died) are free for another to take.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("owner", sa.Text, primary_key=True),
    _stamp("alive_until"),
    _stamp("started_at"),
)

# Requests already taken (a slash command's ``trigger_id``): a replay is answered once.
seen_requests = sa.Table(
    "seen_requests",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    _stamp("created_at"),
)

# Installs into many workspaces (Slack's OAuth flow): slack_sdk's own tables, described by
# slack_sdk's own builders, so this schema and the tables its SQLAlchemy stores query stay
# one description (an upgrade of slack_sdk that changes them fails the schema check until a
# revision follows). Revision 0006 creates them; slack_sdk never creates tables here.
slack_installations = AsyncSQLAlchemyInstallationStore.build_installations_table(
    metadata, AsyncSQLAlchemyInstallationStore.default_installations_table_name
)
slack_bots = AsyncSQLAlchemyInstallationStore.build_bots_table(
    metadata, AsyncSQLAlchemyInstallationStore.default_bots_table_name
)
slack_oauth_states = AsyncSQLAlchemyOAuthStateStore.build_oauth_states_table(
    metadata, AsyncSQLAlchemyOAuthStateStore.default_table_name
)

# -- the agent app (revision 0007) --------------------------------------------------------

# A student's 👍 / 👎 on an answer: one vote per user per answer, changeable.
feedback_votes = sa.Table(
    "feedback_votes",
    metadata,
    _id(),
    _ref("turn_id", "turns.id", on_delete="CASCADE"),
    _text("user_id"),
    _text("value"),  # "good" | "bad"
    _stamp("voted_at"),
    sa.UniqueConstraint("turn_id", "user_id"),
    sqlite_autoincrement=True,
)

# Students already greeted in the Messages tab (greeted once, not on every open).
agent_greetings = sa.Table(
    "agent_greetings",
    metadata,
    _text("team"),
    _text("user_id"),
    _stamp("greeted_at"),
    sa.PrimaryKeyConstraint("team", "user_id"),
)

# What a student was viewing when they opened the tutor (``app_context_changed``, the legacy
# container's context): for one thread, or for a whole DM (``thread_ts`` "") until a thread
# of it takes its own. Only a channel's id and name; never its messages.
viewing_contexts = sa.Table(
    "viewing_contexts",
    metadata,
    _text("team"),
    _text("channel"),
    _text("thread_ts"),
    _text("viewed_channel"),
    _text("viewed_name", nullable=True),
    _stamp("updated_at"),
    sa.PrimaryKeyConstraint("team", "channel", "thread_ts"),
)
