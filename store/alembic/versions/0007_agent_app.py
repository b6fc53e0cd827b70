"""the agent app: feedback votes, Messages-tab greetings, viewing contexts, Stop, and the
indexes the Home tab reads by

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_STAMP = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("turns", sa.Column("stop_requested_at", _STAMP, nullable=True))
    op.create_index("threads_started_by", "threads", ["team", "started_by", "id"])
    op.create_index("quizzes_student", "quizzes", ["student_id", "id"])
    op.create_table(
        "feedback_votes",
        sa.Column("id", _ID, sa.Identity(), primary_key=True),
        sa.Column("turn_id", _ID, sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("voted_at", _STAMP, nullable=False),
        sa.UniqueConstraint("turn_id", "user_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "agent_greetings",
        sa.Column("team", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("greeted_at", _STAMP, nullable=False),
        sa.PrimaryKeyConstraint("team", "user_id"),
    )
    op.create_table(
        "viewing_contexts",
        sa.Column("team", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("thread_ts", sa.Text(), nullable=False),
        sa.Column("viewed_channel", sa.Text(), nullable=False),
        sa.Column("viewed_name", sa.Text(), nullable=True),
        sa.Column("updated_at", _STAMP, nullable=False),
        sa.PrimaryKeyConstraint("team", "channel", "thread_ts"),
    )


def downgrade() -> None:
    op.drop_table("viewing_contexts")
    op.drop_table("agent_greetings")
    op.drop_table("feedback_votes")
    op.drop_index("quizzes_student", table_name="quizzes")
    op.drop_index("threads_started_by", table_name="threads")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("stop_requested_at")
