"""The ledger of side-effect calls: one row per idempotency key (started, completed, failed, unknown).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_KEYS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    text_key = sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "key",
            sa.String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("thread_id", text_key, nullable=True),
        sa.Column("checkpoint_ns", text_key, server_default="", nullable=False),
        sa.Column("tool_call_id", text_key, nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_idempotency_keys"),
        **MYSQL_KEYS,
    )
    op.create_index("ix_idempotency_keys_thread_id", "idempotency_keys", ["thread_id"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
