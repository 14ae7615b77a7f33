"""MySQL/MariaDB: keep microseconds in every timestamp (``DATETIME(6)``); nothing to do on other databases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A plain ``DATETIME`` on MySQL/MariaDB rounds to the second, so rows written within one second lose their order
(``ironloop threads`` sorts by ``created_at``) and a ``>= some instant`` filter misses the rows of that second.
PostgreSQL's ``timestamptz`` and SQLite's text already keep microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("ironloop_checkpoints", "created_at"),
    ("tool_calls", "finished_at"),
    ("tool_attempts", "started_at"),
    ("idempotency_keys", "created_at"),
    ("idempotency_keys", "updated_at"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in COLUMNS:
        op.alter_column(
            table, column, type_=mysql.DATETIME(fsp=6), existing_type=sa.DateTime(), existing_nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in COLUMNS:
        op.alter_column(
            table, column, type_=sa.DateTime(), existing_type=mysql.DATETIME(fsp=6), existing_nullable=False
        )
