"""Running the saver's statements: a DBAPI connection per operation, a transaction only where one is needed.

The saver's SQL is compiled once (`checkpoints.statements`); each operation runs it on a DBAPI connection from
the engine, in a `Transaction`. Going below SQLAlchemy's ``Connection`` saves its per-statement work, which on
SQLite costs more than the queries themselves, while keeping its pool (with its pre-ping) and its error
classification (a lost connection is invalidated, so the pool replaces it).

Transactions: a write takes SQLite's write lock up front (``BEGIN IMMEDIATE``); several statements that must
commit together run in one transaction. Anything else (reads, single-statement writes) runs in autocommit mode
on PostgreSQL and SQLite, saving the ``BEGIN``/``COMMIT`` round trips: each statement sees the latest commit,
which is enough as checkpoints, blobs and writes are never updated in place (only added, or deleted by
maintenance). MySQL/MariaDB connections stay in their implicit transactions, committed after a write.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from ironloop.checkpoints.database import is_serialized, store_error
from ironloop.checkpoints.statements import Compiled
from sqlalchemy import Engine, exc
from sqlalchemy.pool import PoolProxiedConnection


class Connections:
    """Where a saver's operations get their DBAPI connections.

    From the engine's pool, except for a SQLite file: there each thread keeps one connection of its own
    (taken from the engine, so with its pragmas, and detached from the pool), as checking one out of the pool
    costs about as much as the queries of a read. When its thread ends it is kept idle for the next new
    thread (LangGraph runs each invocation's checkpoint writes on fresh threads: opening a connection and
    setting its pragmas for each cost whole tasks about a tenth of their speed); `close` closes them all.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect
        self.backend = engine.dialect.name
        self._per_thread = self.backend == "sqlite" and not is_serialized(engine)
        self.sqlite_writer = threading.Lock() if self.backend == "sqlite" else None
        """SQLite lets one writer in at a time. Threads of this process queue here, woken as soon as the
        writer before them commits; left to SQLite's busy handler they would poll with sleeps of 1-25 ms
        (measured: whole agent tasks 0.76x the official SqliteSaver, which serializes on one connection)."""
        self._local = threading.local()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._idle: list[tuple[PoolProxiedConnection, int]] = []  # (connection, generation), of ended threads
        self._lock = threading.Lock()
        self._generation = 0
        self._pid = os.getpid()

    def acquire(self) -> tuple[PoolProxiedConnection, bool]:
        """A connection, and whether it stays with this thread (then never close it: `discard` it if broken)."""
        if not self._per_thread:
            return self.engine.raw_connection(), False
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.generation != self._generation or held.pid != os.getpid():
            held = _Held(self._idle_or_new(), self._generation)
            held.finalizer = weakref.finalize(held, self._thread_ended, held.connection, held.generation, held.pid)
            with self._lock:
                self._held.add(held)
            self._local.held = held
        return held.connection, True

    def _idle_or_new(self) -> PoolProxiedConnection:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the idle connections are the parent's
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                connection, generation = self._idle.pop()
                if generation == self._generation:
                    return connection
                _close_quietly(connection)
        connection = self.engine.raw_connection()
        connection.detach()
        return connection

    def _thread_ended(self, connection: PoolProxiedConnection, generation: int, pid: int) -> None:
        """Keep an ended thread's connection for the next thread (closed instead if it is stale or broken)."""
        with self._lock:
            if generation == self._generation and pid == os.getpid() and connection.is_valid:
                self._idle.append((connection, generation))
                return
        _close_quietly(connection)

    def discard(self) -> None:
        """Drop this thread's own connection (it failed); its next operation opens another."""
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            if held.finalizer is not None:
                held.finalizer.detach()  # broken: never kept idle
            _close_quietly(held.connection)

    @property
    def kept(self) -> int:
        """Connections threads keep now (SQLite files)."""
        return len(self._held)

    def close(self) -> None:
        """Close the connections threads keep; a thread that runs another operation opens a new one."""
        with self._lock:
            self._generation += 1
            held, self._held = list(self._held), weakref.WeakSet()
            idle, self._idle = self._idle, []
        for item in held:
            _close_quietly(item.connection)
        for connection, _ in idle:
            _close_quietly(connection)


class _Held:
    """A thread's own connection. Its thread-local drops this when the thread ends; a finalizer closes it."""

    __slots__ = ("__weakref__", "connection", "finalizer", "generation", "pid")

    def __init__(self, connection: PoolProxiedConnection, generation: int):
        self.connection = connection
        self.generation = generation
        self.pid = os.getpid()
        self.finalizer: weakref.finalize[Any, Any] | None = None


def _close_quietly(connection: PoolProxiedConnection) -> None:
    with suppress(Exception):
        connection.close()


class Transaction:
    """One operation: ``with Transaction(connections, "saving a checkpoint", write=True) as db: db.run(...)``.

    Committed if the block succeeds, rolled back otherwise. ``write``: the block writes. ``atomic``: its
    statements must commit together. A driver error becomes a `CheckpointStoreError` (`store_error`) naming
    what was being done (``doing``); a connection found dead is invalidated. (A class rather than a generator
    context manager: it runs for every operation, and that costs a few microseconds less.)
    """

    __slots__ = (
        "_atomic",
        "_connection",
        "_connections",
        "_cursor",
        "_dbapi",
        "_doing",
        "_explicit",
        "_kept",
        "_queued",
        "_restore_autocommit",
        "_write",
        "statement",
    )

    def __init__(self, connections: Connections, doing: str, *, write: bool = False, atomic: bool = False):
        self._connections = connections
        self._doing = doing
        self._write = write
        self._atomic = atomic
        self._cursor: Any = None
        self._explicit = False
        self._restore_autocommit = False
        self._queued: threading.Lock | None = None
        self.statement = ""
        """The SQL text of the statement running, for error messages."""

    def rows(self, statement: Compiled, values: Mapping[str, Any] | None = None) -> list[Any]:
        """Run a statement and return all its rows."""
        self.statement = statement.sql
        self._cursor.execute(statement.sql, statement.bind(values or {}))
        return self._cursor.fetchall() if self._cursor.description else []

    def run(self, statement: Compiled, values: Mapping[str, Any] | None = None) -> None:
        self.statement = statement.sql
        self._cursor.execute(statement.sql, statement.bind(values or {}))

    def run_many(self, statement: Compiled, rows: Sequence[Mapping[str, Any]]) -> None:
        self.statement = statement.sql
        self._cursor.executemany(statement.sql, [statement.bind(row) for row in rows])

    def __enter__(self) -> Transaction:
        connections = self._connections
        dbapi_error = connections.dialect.loaded_dbapi.Error
        try:
            self._connection, self._kept = connections.acquire()
        except exc.SQLAlchemyError as error:
            raise store_error(error, connections.engine.url, self._doing) from error
        except dbapi_error as error:  # the pool lets a failed (re)connection through unwrapped
            wrapped = exc.DBAPIError.instance(None, None, error, dbapi_error, dialect=connections.dialect)
            raise store_error(wrapped, connections.engine.url, self._doing) from error
        self._dbapi = dbapi = self._connection.dbapi_connection
        try:
            self._cursor = cursor = dbapi.cursor()  # type: ignore[union-attr]
            if connections.backend == "sqlite":
                # Our engines turn pysqlite's transaction handling off (see `checkpoints.database`).
                self._explicit = dbapi.isolation_level is None and (self._write or self._atomic)  # type: ignore[union-attr]
                if self._explicit and self._write and connections.sqlite_writer is not None:
                    connections.sqlite_writer.acquire()
                    self._queued = connections.sqlite_writer
                if self._explicit:
                    cursor.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
            elif connections.backend == "postgresql":
                if not dbapi.autocommit:  # type: ignore[union-attr]
                    dbapi.autocommit = True  # type: ignore[union-attr]
                    self._restore_autocommit = True
                if self._atomic:
                    cursor.execute("BEGIN")
        except BaseException as error:
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _traceback: Any) -> None:
        try:
            if error is None:
                try:
                    if self._explicit or (self._atomic and self._connections.backend == "postgresql"):
                        self._cursor.execute("COMMIT")
                    elif self._write:
                        self._dbapi.commit()  # type: ignore[union-attr]
                except BaseException as failure:
                    self._fail(failure)
                    raise
            else:
                self._fail(error)
        finally:
            if self._queued is not None:
                self._queued.release()
                self._queued = None
            if self._cursor is not None:
                with suppress(Exception):
                    self._cursor.close()
            if not self._kept:
                if self._restore_autocommit and self._connection.is_valid:
                    with suppress(Exception):
                        self._dbapi.autocommit = False  # type: ignore[union-attr]
                with suppress(Exception):
                    self._connection.close()

    def _fail(self, error: BaseException) -> None:
        """Roll back, then raise the `CheckpointStoreError` a driver error stands for (others go on as they are)."""
        connections = self._connections
        dialect = connections.dialect
        with suppress(Exception):
            if self._explicit:
                if self._dbapi.in_transaction:  # type: ignore[union-attr]
                    self._cursor.execute("ROLLBACK")
            else:
                self._dbapi.rollback()  # type: ignore[union-attr]
        if not isinstance(error, dialect.loaded_dbapi.Error):
            return
        try:
            lost = bool(dialect.is_disconnect(error, self._dbapi, self._cursor))
        except Exception:
            lost = False
        if lost:
            if self._kept:
                connections.discard()
            else:
                self._connection.invalidate(error)
        wrapped = exc.DBAPIError.instance(
            self.statement or "(checkpoint store)",
            None,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        )
        raise store_error(wrapped, connections.engine.url, self._doing) from error
