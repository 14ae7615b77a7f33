"""One runner per thread and one decision per waiting call: the thread leases and the approval decisions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_KEYS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    text_key = sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )
    moment = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

    def ascii_key(length: int) -> sa.types.TypeEngine[str]:
        return sa.String(length).with_variant(
            mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
        )

    op.create_table(
        "ironloop_thread_leases",
        sa.Column("thread_id", text_key, nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_started", sa.String(32), nullable=True),
        sa.Column("acquired_at", moment, nullable=True),
        sa.Column("expires_at", moment, nullable=True),
        sa.PrimaryKeyConstraint("thread_id", name="pk_ironloop_thread_leases"),
        **MYSQL_KEYS,
    )
    op.create_table(
        "ironloop_approval_decisions",
        sa.Column("key", ascii_key(64), nullable=False),
        sa.Column("thread_id", text_key, nullable=False),
        sa.Column("checkpoint_id", ascii_key(255), nullable=False),
        sa.Column("tool_call_id", text_key, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_at", moment, nullable=False),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_ironloop_approval_decisions"),
        **MYSQL_KEYS,
    )
    op.create_index("ix_ironloop_approval_decisions_thread_id", "ironloop_approval_decisions", ["thread_id"])


def downgrade() -> None:
    op.drop_table("ironloop_approval_decisions")
    op.drop_table("ironloop_thread_leases")
