"""Schema migrations: shipped with the package, applied on a saver's first use or by ``ironloop db upgrade``.

The migrations are Alembic scripts in ``checkpoints/migrations/versions``, an append-only numbered list
(``0001``, ``0002``, ...). The applied revision is kept in ``ironloop_schema_version``, not Alembic's default
``alembic_version``, so an application's own Alembic history never meets ours in a shared database.

Two processes may start on a fresh database at once: `upgrade` holds a database-wide lock while it reads the
revision and migrates (PostgreSQL advisory lock, MySQL/MariaDB ``GET_LOCK``, SQLite ``BEGIN IMMEDIATE``), so
the second one waits and then finds nothing to do. On any other dialect, or if the lock is not available, a
"table already exists" failure is followed by a re-check of the revision. A database whose revision the
shipped scripts do not know was migrated by a newer ironloop: `SchemaTooNewError`, and nothing is touched.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from ironloop.checkpoints.database import WRITE_TRANSACTION, store_error
from ironloop.checkpoints.errors import CheckpointStoreError, SchemaError, SchemaTooNewError
from sqlalchemy import Connection, Engine, exc, text

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "ironloop_schema_version"
LOCK_NAME = "ironloop_schema_migration"
_PG_LOCK_KEY = zlib.crc32(LOCK_NAME.encode())  # pg_advisory_xact_lock takes a number: derive one from the name
_MYSQL_LOCK_TIMEOUT_S = 60


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the shipped scripts, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision the shipped scripts know."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def known_revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it has never been migrated."""
    try:
        with engine.connect() as connection:
            return _current(connection)
    except exc.SQLAlchemyError as error:
        raise store_error(error, engine.url, "reading the schema revision") from error


def check_revision(revision: str | None) -> None:
    """Raise `SchemaTooNewError` if ``revision`` is not one of ours (a newer ironloop wrote it)."""
    if revision is not None and revision not in known_revisions():
        raise SchemaTooNewError(revision, head_revision())


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: the newest); returns the revision it is at afterwards.

    Idempotent, and safe when several processes call it at once.
    """
    try:
        return _upgrade_locked(engine, revision)
    except CheckpointStoreError:
        raise
    except exc.SQLAlchemyError as error:
        # Another process created the tables between our check and our DDL, without a lock to stop it.
        if _is_already_exists(error):
            after = current_revision(engine)
            check_revision(after)
            target = head_revision() if revision == "head" else revision
            if after is not None and after == target:
                return after
        raise store_error(error, engine.url, "migrating the checkpoint schema") from error
    except Exception as error:
        raise SchemaError(f"migrating the checkpoint schema failed: {type(error).__name__}: {error}") from error


def ensure_schema(engine: Engine) -> None:
    """Bring the database to the newest revision if it is not there yet (one cheap read when it is)."""
    current = current_revision(engine)
    check_revision(current)
    if current != head_revision():
        upgrade(engine)


def _upgrade_locked(engine: Engine, revision: str) -> str | None:
    with _migration_lock(engine) as connection:
        current = _current(connection)
        check_revision(current)
        target = head_revision() if revision == "head" else revision
        if current != target:
            command.upgrade(alembic_config(connection), revision)
        return _current(connection)


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database-wide migration lock; committed on success."""
    backend = engine.url.get_backend_name()
    with engine.connect() as connection:
        if backend == "postgresql":
            with connection.begin():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                yield connection
        elif backend in ("mysql", "mariadb"):
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": LOCK_NAME, "timeout": _MYSQL_LOCK_TIMEOUT_S}
            ).scalar()
            connection.commit()
            if got != 1:
                raise SchemaError(f"could not take the migration lock {LOCK_NAME!r} in {_MYSQL_LOCK_TIMEOUT_S} s")
            try:
                with connection.begin():
                    yield connection
            finally:
                with suppress(exc.SQLAlchemyError):  # a lost connection has released the lock already
                    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
                    connection.commit()
        else:
            connection.execution_options(**{WRITE_TRANSACTION: True})
            with connection.begin():
                yield connection


def _is_already_exists(error: exc.SQLAlchemyError) -> bool:
    message = str(getattr(error, "orig", error)).lower()
    return "already exists" in message or "duplicate" in message or "1050" in message
