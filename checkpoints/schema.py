"""The tables, as SQLAlchemy Core objects: the one description of the schema the code reads and writes.

Checkpoints use the PostgreSQL saver's layout, so a step rewrites only what changed:

- `checkpoints`: one row per checkpoint. ``checkpoint`` is the serialized checkpoint (versions, versions
  seen, and channel values that are plain scalars) without the other channel values.
- `checkpoint_blobs`: one row per (channel, version) of a thread and namespace. A channel that did not change
  in a step (a long message list while a tool runs) keeps its version and is not written again.
- `checkpoint_writes`: pending writes of a checkpoint, one row per (task, index).

Table names carry an ``ironloop_`` prefix so they never meet the official LangGraph savers' ``checkpoints``
tables (or anyone else's) in a shared database. `tool_calls` and `tool_attempts` are the attempt ledger
(`checkpoints.ledger`), with `tool_approvals` for the decisions on calls that waited for a human.
`thread_leases` says who runs a thread now (`checkpoints.leases`), `approval_decisions` which decision on a
waiting call came first (`checkpoints.decisions`). The migrations in ``checkpoints/migrations`` create exactly
these tables; a test checks that the two agree.

Portability: ids are ``VARCHAR(255)``; blobs are ``LargeBinary`` (``LONGBLOB`` on MySQL/MariaDB). On
MySQL/MariaDB, text keys use the binary ``utf8mb4_bin`` collation (thread ``"A"`` and ``"a"`` stay two
threads) and the machine-made keys (checkpoint id, task id, channel, version) are ASCII: a primary key
of four utf8mb4 ``VARCHAR(255)`` columns would pass InnoDB's 3072-byte key limit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata_obj = MetaData(naming_convention=NAMING_CONVENTION)

KEY_LENGTH = 255
"""Length of every id column; longer keys are refused before anything is written."""

MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def text_key(length: int = KEY_LENGTH) -> TypeEngine[str]:
    """A user-chosen key (thread id, namespace): any text, compared byte for byte."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def ascii_key(length: int = KEY_LENGTH) -> TypeEngine[str]:
    """A machine-made key (checkpoint id, task id, channel, version): ASCII on MySQL/MariaDB, to fit key limits."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def binary() -> TypeEngine[bytes]:
    """Serialized values: ``BLOB`` is 64 KiB on MySQL/MariaDB, so ``LONGBLOB`` there."""
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant on every database: aware datetimes in and out.

    PostgreSQL stores ``timestamptz``; SQLite and MySQL/MariaDB have no time zone in their ``DATETIME``, so
    the value is stored as naive UTC (MariaDB refuses an offset in a literal) and read back as UTC. A naive
    value passed in is taken to be UTC already. MySQL/MariaDB get ``DATETIME(6)``: their plain ``DATETIME``
    drops the microseconds, and with them the order of events within a second.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "postgresql":
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


checkpoints = Table(
    "ironloop_checkpoints",
    metadata_obj,
    Column("thread_id", text_key(), primary_key=True),
    Column("checkpoint_ns", text_key(), primary_key=True, server_default=""),
    Column("checkpoint_id", ascii_key(), primary_key=True),
    Column("parent_checkpoint_id", ascii_key(), nullable=True),
    Column("run_id", text_key(), nullable=True),  # metadata["run_id"], for delete_for_runs
    Column("type", String(64), nullable=False),  # the serializer's type tag of `checkpoint`
    Column("checkpoint", binary(), nullable=False),
    Column("metadata", JSON(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "run_id"),
    **MYSQL_TABLE_OPTIONS,
)

checkpoint_blobs = Table(
    "ironloop_checkpoint_blobs",
    metadata_obj,
    Column("thread_id", text_key(), primary_key=True),
    Column("checkpoint_ns", text_key(), primary_key=True, server_default=""),
    Column("channel", ascii_key(), primary_key=True),
    Column("version", ascii_key(), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("blob", binary(), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

checkpoint_writes = Table(
    "ironloop_checkpoint_writes",
    metadata_obj,
    Column("thread_id", text_key(), primary_key=True),
    Column("checkpoint_ns", text_key(), primary_key=True, server_default=""),
    Column("checkpoint_id", ascii_key(), primary_key=True),
    Column("task_id", ascii_key(), primary_key=True),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("channel", text_key(), nullable=False),
    Column("type", String(64), nullable=False),
    Column("blob", binary(), nullable=False),
    Column("task_path", Text(), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

tool_calls = Table(
    "tool_calls",
    metadata_obj,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("thread_id", String(255), nullable=True),
    Column("checkpoint_ns", String(255), nullable=False, server_default=""),
    Column("tool_call_id", String(255), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("duration_ms", Float(), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=False),
    Index(None, "tool", "finished_at"),
    Index(None, "thread_id"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

tool_attempts = Table(
    "tool_attempts",
    metadata_obj,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("thread_id", String(255), nullable=True),
    Column("checkpoint_ns", String(255), nullable=False, server_default=""),
    Column("tool_call_id", String(255), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Float(), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("error_class", String(255), nullable=True),
    Column("error_text", String(500), nullable=True),
    Column("details", JSON(), nullable=True),
    Index(None, "tool", "started_at"),
    Index(None, "thread_id", "tool_call_id"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

tool_approvals = Table(
    "tool_approvals",
    metadata_obj,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("thread_id", String(255), nullable=True),
    Column("checkpoint_ns", String(255), nullable=False, server_default=""),
    Column("tool_call_id", String(255), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("decided_by", String(255), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("mode", String(16), nullable=False),
    Column("asked_because", String(500), nullable=True),
    Column("args", JSON(), nullable=True),
    Column("edited_args", JSON(), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=False),
    Index(None, "thread_id"),
    Index(None, "tool", "decided_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
"""The approval ledger (`checkpoints.ledger`): one row per human decision on a tool call."""

idempotency_keys = Table(
    "idempotency_keys",
    metadata_obj,
    Column("key", ascii_key(64), primary_key=True),
    Column("thread_id", text_key(), nullable=True),
    Column("checkpoint_ns", text_key(), nullable=False, server_default=""),
    Column("tool_call_id", text_key(), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("result", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "thread_id"),
    **MYSQL_TABLE_OPTIONS,
)
"""The ledger of side-effect calls (`checkpoints.idempotency`): one row per idempotency key."""

thread_leases = Table(
    "ironloop_thread_leases",
    metadata_obj,
    Column("thread_id", text_key(), primary_key=True),
    Column("token", BigInteger(), nullable=False),
    Column("holder", String(255), nullable=True),
    Column("host", String(255), nullable=True),
    Column("pid", Integer(), nullable=True),
    Column("pid_started", String(32), nullable=True),
    Column("acquired_at", UTCDateTime(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    **MYSQL_TABLE_OPTIONS,
)
"""One runner per thread (`checkpoints.leases`): who holds a thread, since when, until when unless renewed. A
released lease keeps its row (``holder`` NULL), so ``token`` only grows: every acquisition gets a new one."""

approval_decisions = Table(
    "ironloop_approval_decisions",
    metadata_obj,
    Column("key", ascii_key(64), primary_key=True),
    Column("thread_id", text_key(), nullable=False),
    Column("checkpoint_id", ascii_key(), nullable=False),
    Column("tool_call_id", text_key(), nullable=False),
    Column("round", Integer(), nullable=False),
    Column("tool", String(255), nullable=False),
    Column("decision", JSON(), nullable=False),
    Column("decided_by", String(255), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=False),
    Column("refused", Text(), nullable=True),
    Index(None, "thread_id"),
    **MYSQL_TABLE_OPTIONS,
)
"""One decision per waiting call (`checkpoints.decisions`): the first process to decide wins, by primary key."""

__all__ = [
    "KEY_LENGTH",
    "UTCDateTime",
    "approval_decisions",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoints",
    "idempotency_keys",
    "metadata_obj",
    "thread_leases",
    "tool_approvals",
    "tool_attempts",
    "tool_calls",
]
