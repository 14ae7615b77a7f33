"""SQL checkpoints for LangGraph: one saver for SQLite, PostgreSQL and MySQL/MariaDB, sync and async.

    from ironloop.checkpoints import SQLAlchemySaver

    with SQLAlchemySaver.from_url("postgresql://user@host:5432/db") as saver:
        agent = build_agent(model, tools, checkpointer=saver)

The schema is migrated on first use (`checkpoints.migrate`); the errors are in `checkpoints.errors`.
"""

from typing import TYPE_CHECKING

from ironloop.lazy import from_modules, lazy_exports

if TYPE_CHECKING:
    from ironloop.checkpoints.database import DEFAULT_DB_URL, default_db_url, make_engine
    from ironloop.checkpoints.errors import (
        CheckpointStoreError,
        CorruptCheckpointError,
        DatabaseUnavailableError,
        InvalidDatabaseURLError,
        InvalidKeyError,
        MissingDatabaseError,
        SchemaError,
        SchemaTooNewError,
    )
    from ironloop.checkpoints.saver import SQLAlchemySaver
    from ironloop.checkpoints.serde import AllowListSerializer, DisallowedTypeError

__all__ = [
    "DEFAULT_DB_URL",
    "AllowListSerializer",
    "CheckpointStoreError",
    "CorruptCheckpointError",
    "DatabaseUnavailableError",
    "DisallowedTypeError",
    "InvalidDatabaseURLError",
    "InvalidKeyError",
    "MissingDatabaseError",
    "SQLAlchemySaver",
    "SchemaError",
    "SchemaTooNewError",
    "default_db_url",
    "make_engine",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    from_modules(
        {
            "ironloop.checkpoints.database": ("DEFAULT_DB_URL", "default_db_url", "make_engine"),
            "ironloop.checkpoints.errors": (
                "CheckpointStoreError",
                "CorruptCheckpointError",
                "DatabaseUnavailableError",
                "InvalidDatabaseURLError",
                "InvalidKeyError",
                "MissingDatabaseError",
                "SchemaError",
                "SchemaTooNewError",
            ),
            "ironloop.checkpoints.saver": ("SQLAlchemySaver",),
            "ironloop.checkpoints.serde": ("AllowListSerializer", "DisallowedTypeError"),
        }
    ),
)
