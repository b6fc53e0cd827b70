"""chat runtime: chat_messages (the conversations a chat server does not keep) and
chat_documents (text the bot read from shared files)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STAMP = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
_JSON = JSONB().with_variant(sa.Text(), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", _ID, sa.Identity(), primary_key=True),
        sa.Column("conversation", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("message", _JSON, nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("chat_messages_conversation", "chat_messages", ["conversation", "id"])
    op.create_table(
        "chat_documents",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chat_documents")
    op.drop_index("chat_messages_conversation", table_name="chat_messages")
    op.drop_table("chat_messages")
