"""Initial schema: checkpoints, their channel blobs and pending writes; the tool-call ledger.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Migrations are an append-only numbered list: never edit a released one, add the next number instead.
A migration describes the schema as it was at its time, so it does not import `checkpoints.schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_KEYS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
MYSQL_LEDGER: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def text_key() -> sa.types.TypeEngine:
    return sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def ascii_key() -> sa.types.TypeEngine:
    return sa.String(255).with_variant(mysql.VARCHAR(255, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")


def binary() -> sa.types.TypeEngine:
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "ironloop_checkpoints",
        sa.Column("thread_id", text_key(), nullable=False),
        sa.Column("checkpoint_ns", text_key(), server_default="", nullable=False),
        sa.Column("checkpoint_id", ascii_key(), nullable=False),
        sa.Column("parent_checkpoint_id", ascii_key(), nullable=True),
        sa.Column("run_id", text_key(), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("checkpoint", binary(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "checkpoint_ns", "checkpoint_id", name="pk_ironloop_checkpoints"),
        **MYSQL_KEYS,
    )
    op.create_index("ix_ironloop_checkpoints_run_id", "ironloop_checkpoints", ["run_id"])

    op.create_table(
        "ironloop_checkpoint_blobs",
        sa.Column("thread_id", text_key(), nullable=False),
        sa.Column("checkpoint_ns", text_key(), server_default="", nullable=False),
        sa.Column("channel", ascii_key(), nullable=False),
        sa.Column("version", ascii_key(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("blob", binary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "thread_id", "checkpoint_ns", "channel", "version", name="pk_ironloop_checkpoint_blobs"
        ),
        **MYSQL_KEYS,
    )

    op.create_table(
        "ironloop_checkpoint_writes",
        sa.Column("thread_id", text_key(), nullable=False),
        sa.Column("checkpoint_ns", text_key(), server_default="", nullable=False),
        sa.Column("checkpoint_id", ascii_key(), nullable=False),
        sa.Column("task_id", ascii_key(), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel", text_key(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("blob", binary(), nullable=False),
        sa.Column("task_path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx", name="pk_ironloop_checkpoint_writes"
        ),
        **MYSQL_KEYS,
    )

    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", sa.String(255), nullable=True),
        sa.Column("checkpoint_ns", sa.String(255), server_default="", nullable=False),
        sa.Column("tool_call_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tool_calls"),
        **MYSQL_LEDGER,
    )
    op.create_index("ix_tool_calls_tool_finished_at", "tool_calls", ["tool", "finished_at"])
    op.create_index("ix_tool_calls_thread_id", "tool_calls", ["thread_id"])

    op.create_table(
        "tool_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", sa.String(255), nullable=True),
        sa.Column("checkpoint_ns", sa.String(255), server_default="", nullable=False),
        sa.Column("tool_call_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error_class", sa.String(255), nullable=True),
        sa.Column("error_text", sa.String(500), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tool_attempts"),
        **MYSQL_LEDGER,
    )
    op.create_index("ix_tool_attempts_tool_started_at", "tool_attempts", ["tool", "started_at"])
    op.create_index("ix_tool_attempts_thread_id_tool_call_id", "tool_attempts", ["thread_id", "tool_call_id"])


def downgrade() -> None:
    op.drop_table("tool_attempts")
    op.drop_table("tool_calls")
    op.drop_table("ironloop_checkpoint_writes")
    op.drop_table("ironloop_checkpoint_blobs")
    op.drop_table("ironloop_checkpoints")
