"""threads, turns, quizzes, files, settings: the schema of the store before Alembic

Databases created before Alembic (with a ``schema_migrations`` table at version 1) have
exactly these tables; ``store.migrate`` stamps them with this revision instead of running
it. Written out here rather than taken from ``store.schema``, because a revision, once
released, never changes.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# As the pre-Alembic store wrote them: TIMESTAMPTZ / JSONB / BIGINT identities on
# PostgreSQL; ISO text / JSON text / INTEGER rowids on SQLite.
_STAMP = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
_JSON = JSONB().with_variant(sa.Text(), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, sa.Identity(), primary_key=True)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _stamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, _STAMP, nullable=nullable)


def _ref(name: str, target: str, *, on_delete: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, _ID, sa.ForeignKey(target, ondelete=on_delete), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "threads",
        _id(),
        _text("team"),
        _text("channel"),
        _text("thread_ts"),
        _text("runtime"),
        _text("remote_id", nullable=True),
        _text("started_by", nullable=True),
        _text("lock_owner", nullable=True),
        _stamp("lock_expires_at", nullable=True),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.UniqueConstraint("team", "channel", "thread_ts"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "turns",
        _id(),
        _ref("thread_id", "threads.id", on_delete="CASCADE"),
        _text("kind"),
        _text("status"),
        _text("user_id", nullable=True),
        _text("text"),
        _text("message_ts"),
        _text("remote_run_id", nullable=True),
        _text("status_message_ts", nullable=True),
        sa.Column("files", _JSON, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _text("error", nullable=True),
        _ref("parent_turn_id", "turns.id", on_delete="SET NULL", nullable=True),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.UniqueConstraint("thread_id", "message_ts"),
        sqlite_autoincrement=True,
    )
    op.create_index("turns_status_thread", "turns", ["status", "thread_id"])
    op.create_table(
        "quizzes",
        _id(),
        _ref("turn_id", "turns.id", on_delete="CASCADE"),
        _ref("thread_id", "threads.id", on_delete="CASCADE"),
        _text("call_id"),
        _text("title"),
        sa.Column("questions", _JSON, nullable=False),
        sa.Column("answers", _JSON, nullable=False),
        _text("status"),
        _text("channel"),
        _text("message_ts", nullable=True),
        _text("remote_run_id", nullable=True),
        _text("student_id", nullable=True),
        _text("error_output", nullable=True),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.UniqueConstraint("thread_id", "call_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("quizzes_turn", "quizzes", ["turn_id"])
    op.create_index("quizzes_remote_run", "quizzes", ["remote_run_id"])
    op.create_table(
        "files",
        _id(),
        _ref("thread_id", "threads.id", on_delete="CASCADE"),
        _text("slack_file_id"),
        _text("remote_file_id"),
        _stamp("created_at"),
        sa.UniqueConstraint("thread_id", "slack_file_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.Text(), primary_key=True),
        _text("value"),
    )


def downgrade() -> None:
    for table in ("settings", "files", "quizzes", "turns", "threads"):
        op.drop_table(table)
