"""The approval ledger: one row per human decision on a tool call (approve, reject, edit).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_LEDGER: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "tool_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", sa.String(255), nullable=True),
        sa.Column("checkpoint_ns", sa.String(255), server_default="", nullable=False),
        sa.Column("tool_call_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("asked_because", sa.String(500), nullable=True),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("edited_args", sa.JSON(), nullable=True),
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tool_approvals"),
        **MYSQL_LEDGER,
    )
    op.create_index("ix_tool_approvals_thread_id", "tool_approvals", ["thread_id"])
    op.create_index("ix_tool_approvals_tool_decided_at", "tool_approvals", ["tool", "decided_at"])


def downgrade() -> None:
    op.drop_table("tool_approvals")
