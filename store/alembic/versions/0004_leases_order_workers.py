"""several processes: lease epochs (fencing), process heartbeats, turns in message order,
slash commands taken once

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_STAMP = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "threads",
        sa.Column("lock_epoch", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("turns", sa.Column("order_key", sa.Text(), nullable=True))
    op.create_index("turns_thread_order", "turns", ["thread_id", "status", "order_key"])
    op.create_table(
        "workers",
        sa.Column("owner", sa.Text(), primary_key=True),
        sa.Column("alive_until", _STAMP, nullable=False),
        sa.Column("started_at", _STAMP, nullable=False),
    )
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("created_at", _STAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seen_requests")
    op.drop_table("workers")
    op.drop_index("turns_thread_order", table_name="turns")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("order_key")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("lock_epoch")
