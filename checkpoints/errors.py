"""The errors the checkpoint store raises, so a caller can tell "try again later" from "fix something".

Their root is an `IronloopError` (the whole tree is drawn in `ironloop.tools.errors`).

    CheckpointStoreError               anything the checkpoint store raises on purpose
    ├── DatabaseUnavailableError       the database cannot be reached, or the connection dropped mid-operation;
    │                                  nothing is lost: retry, or resume the run from its last checkpoint later
    ├── InvalidDatabaseURLError        the URL is malformed, names an unknown dialect, or its driver is missing
    ├── MissingDatabaseError           a SQLite file that is not there, where it must not be created (a read)
    ├── InvalidKeyError                a thread id, namespace, checkpoint id, task id or channel does not fit
    │                                  its column; refused before anything is written
    ├── SchemaError                    the database's schema cannot be used as it is
    │   └── SchemaTooNewError          the database was migrated by a newer ironloop than this one
    └── CorruptCheckpointError         a stored checkpoint (its payload, a channel blob or a pending write)
                                       cannot be decoded; the thread's other checkpoints stay readable

`DatabaseUnavailableError` and `InvalidDatabaseURLError` messages name the dialect, host, port and database,
never the password. The SQLAlchemy error that caused one is kept as ``__cause__``.
"""

from __future__ import annotations

from ironloop.tools.errors import IronloopError


class CheckpointStoreError(IronloopError):
    """Root of the errors raised by the checkpoint store."""


class DatabaseUnavailableError(CheckpointStoreError):
    """The database cannot be reached, or the connection was lost during the operation.

    The operation did not complete; the saver stays usable and works again once the database is back.
    ``connection_lost`` tells a connection that broke midway (worth one more try on a new connection) from
    a database that refused or did not answer a new one.
    """

    def __init__(self, message: str, *, connection_lost: bool = False):
        super().__init__(message)
        self.connection_lost = connection_lost


class InvalidDatabaseURLError(CheckpointStoreError, ValueError):
    """The database URL cannot be used: malformed, unknown dialect, or its driver is not installed."""


class MissingDatabaseError(CheckpointStoreError, ValueError):
    """A SQLite database file that does not exist, opened by something that only reads (nothing is created)."""


class InvalidKeyError(CheckpointStoreError, ValueError):
    """A key (thread id, namespace, checkpoint id, task id, channel) does not fit its column."""


class SchemaError(CheckpointStoreError):
    """The database schema cannot be used as it is."""


class SchemaTooNewError(SchemaError):
    """The database records a schema revision this code does not know: it was migrated by a newer ironloop."""

    def __init__(self, database_revision: str, code_revision: str | None):
        self.database_revision = database_revision
        self.code_revision = code_revision
        super().__init__(
            f"the checkpoint database is at schema revision {database_revision!r}, which this version of ironloop "
            f"does not know (its newest revision is {code_revision!r}); the database was migrated by a newer "
            "ironloop: upgrade ironloop, or use another database"
        )


class CorruptCheckpointError(CheckpointStoreError):
    """A stored checkpoint cannot be decoded."""

    def __init__(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, detail: str):
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.checkpoint_id = checkpoint_id
        self.detail = detail
        where = f"thread {thread_id!r}" + (f", namespace {checkpoint_ns!r}" if checkpoint_ns else "")
        super().__init__(f"checkpoint {checkpoint_id!r} of {where} is corrupt: {detail}")
