"""From a URL to a ready SQLAlchemy engine, and from a database failure to an error that says what to do.

Supported URLs:

- ``sqlite:///path/to/file.db`` (the parent directory is created, unless ``create=False``: then a missing file
  is `MissingDatabaseError`; ``sqlite://`` is an in-memory database)
- ``postgresql://user@host:port/db`` or ``postgresql+psycopg://...`` (psycopg 3; ``postgres://`` too)
- ``mysql+pymysql://user@host:port/db`` or ``mariadb+pymysql://...`` (plain ``mysql://``/``mariadb://`` too)

SQLite runs in WAL mode (readers never wait for the writer) with ``synchronous=NORMAL`` (a commit does not
wait for an fsync; a power cut may lose the last commits, never corrupt the file) and a busy timeout, so
threads and processes wait for each other's writes instead of failing. pysqlite's own transaction handling is
off: transactions start where the code says, and write transactions with ``BEGIN IMMEDIATE`` (SQLAlchemy
connections given the `WRITE_TRANSACTION` option; the saver's writes), so one that reads before it writes
never fails on a stale snapshot.

Server databases get ``pool_pre_ping`` (a connection that died while idle in the pool is replaced, not handed
out; the ping polls the socket instead of running a query, see `_install_socket_ping`), short connect timeouts,
TCP keepalives and read timeouts, so a lost server makes an operation fail within seconds instead of hanging.
`store_error` turns what SQLAlchemy and the drivers raise into the errors of `checkpoints.errors`.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import Any

from ironloop.checkpoints.errors import (
    CheckpointStoreError,
    DatabaseUnavailableError,
    InvalidDatabaseURLError,
    MissingDatabaseError,
)
from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.pool import StaticPool

DEFAULT_DB_URL = "sqlite:///./ironloop.db"
"""Where checkpoints go when neither an argument nor ``$IRONLOOP_DB_URL`` says otherwise."""

DB_URL_ENV = "IRONLOOP_DB_URL"

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another writer (thread or process) before giving up."""

CONNECT_TIMEOUT_S = 10
"""How long connecting to a database server may take."""

WRITE_TRANSACTION = "ironloop_write"
"""Execution option marking a connection whose transactions write (``BEGIN IMMEDIATE`` on SQLite)."""

_DRIVERS = {
    "postgresql": "psycopg",
    "postgres": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}
_EXTRAS = {"psycopg": "postgres", "pymysql": "mysql"}
"""The ``ironloop[...]`` extra that installs each default driver."""
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
SUPPORTED = "sqlite:///path.db, postgresql+psycopg://user@host:port/db, mysql+pymysql://user@host:port/db"


def default_db_url() -> str:
    """``$IRONLOOP_DB_URL`` if set, else a SQLite file ``./ironloop.db``."""
    return os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL


def parse_url(url: str | URL) -> URL:
    """Parse and normalize a database URL: ``postgresql://`` gets psycopg 3, ``mysql://`` gets PyMySQL."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError, TypeError) as error:
        raise InvalidDatabaseURLError(
            f"not a database URL: {_redacted_text(str(url))!r} (expected e.g. {SUPPORTED})"
        ) from error
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise InvalidDatabaseURLError(
            f"unsupported database {parsed.drivername!r} in {describe(parsed)}; supported: {SUPPORTED}"
        )
    if not driver and backend in _DRIVERS:
        driver = _DRIVERS[backend]
    return parsed.set(drivername=f"{backend}+{driver}" if driver else backend)


def _missing_driver(parsed: URL, error: Exception) -> str:
    """One line saying which driver is missing for ``parsed`` and what installs it."""
    database, driver = describe(parsed), parsed.get_driver_name()
    extra = _EXTRAS.get(driver)
    if extra is None:
        return f"cannot use {database}: driver {parsed.drivername!r} is not available ({error}); supported: {SUPPORTED}"
    if "libpq" in str(error) or "pq wrapper" in str(error):  # psycopg is there, the C library it needs is not
        return f"cannot use {database}: psycopg finds no libpq; install libpq, or: pip install 'psycopg[binary]'"
    return f"cannot use {database}: its driver {driver} is not installed; run: pip install 'ironloop[{extra}]'"


def describe(url: str | URL) -> str:
    """The database in words, for messages: dialect, host, port and database name, never the password."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except Exception:
        return "an unparsable database URL"
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        return f"sqlite database {database!r}" if database and database != ":memory:" else "in-memory sqlite database"
    port = parsed.port or _DEFAULT_PORTS.get(backend)
    host = parsed.host or "localhost"
    return f"{backend} database {parsed.database!r} at {host}:{port}" if port else f"{backend} database at {host}"


def make_engine(url: str | URL | None = None, *, create: bool = True, **engine_options: Any) -> Engine:
    """A pooled, thread-safe engine for ``url`` (default: `default_db_url`), configured as described above.

    ``create=False`` is for commands that only read: a SQLite file that does not exist raises
    `MissingDatabaseError` instead of being created (with its directories). ``engine_options`` go to
    `sqlalchemy.create_engine` and win over the defaults (``connect_args`` is merged).
    """
    parsed = parse_url(url if url is not None else default_db_url())
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
        if in_memory:
            # One connection shared by every thread (the saver serializes its use), so all see one database.
            options["poolclass"] = StaticPool
        elif not database.startswith("file:"):
            path = Path(database).expanduser()
            if not create and not path.is_file():
                raise MissingDatabaseError(
                    f"no checkpoint database at {path}: the file does not exist (nothing used it yet)"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
        connect_args["check_same_thread"] = False  # connections move between threads (pool, finalizers)
    else:
        options["pool_pre_ping"] = True  # with `_socket_ping` as the ping: see below
        options["pool_recycle"] = 1800
        if backend == "postgresql":
            connect_args.update(
                connect_timeout=CONNECT_TIMEOUT_S,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                tcp_user_timeout=30_000,
            )
        else:
            connect_args.update(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=120, write_timeout=120)
            connect_args.setdefault("charset", "utf8mb4")
    # Parameters written in the URL's query string win over these defaults.
    for key in parsed.query:
        connect_args.pop(key, None)
    connect_args.update(engine_options.pop("connect_args", {}) or {})
    options.update(engine_options)
    try:
        engine = create_engine(parsed, connect_args=connect_args, **options)
    except (exc.NoSuchModuleError, ImportError) as error:
        raise InvalidDatabaseURLError(_missing_driver(parsed, error)) from error
    except exc.ArgumentError as error:
        raise InvalidDatabaseURLError(f"cannot use {describe(parsed)}: {error}") from error
    if backend == "sqlite":
        _configure_sqlite(engine)
    elif options.get("pool_pre_ping"):
        _install_socket_ping(engine)
    return engine


def _install_socket_ping(engine: Engine) -> None:
    """Make ``pool_pre_ping`` check a pooled connection without a round trip to the server.

    SQLAlchemy's ping runs a query before every checkout (a round trip per operation). An idle connection
    whose server went away (restart, idle timeout, a proxy that closed it) has its socket readable (the
    close, or the server's goodbye message), so polling the socket finds it, at no cost. A connection that
    dies unnoticed (no packet ever arrives) fails its next statement instead; the saver then retries once
    on a new connection. If the socket cannot be found, SQLAlchemy's own ping is used.
    """
    dialect = engine.dialect
    query_ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        descriptor = _socket_of(dbapi_connection)
        if descriptor is None:
            return query_ping(dbapi_connection)
        return descriptor >= 0 and not _readable(descriptor)

    dialect.do_ping = do_ping  # type: ignore[method-assign]


def _socket_of(dbapi_connection: Any) -> int | None:
    """The connection's socket descriptor; -1 if the driver knows it is closed; None if unknown."""
    try:
        module = type(dbapi_connection).__module__
        if module.startswith("psycopg"):
            if dbapi_connection.closed or dbapi_connection.broken:
                return -1
            return int(dbapi_connection.fileno())
        if module.startswith("pymysql"):
            sock = getattr(dbapi_connection, "_sock", None)
            return -1 if sock is None else int(sock.fileno())
    except Exception:
        return None
    return None


def _readable(descriptor: int) -> bool:
    """Whether anything (data, an error, the peer's close) waits on an idle connection's socket."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(descriptor, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, broken = select.select([descriptor], [], [descriptor], 0)
    return bool(readable or broken)


def _configure_sqlite(engine: Engine) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off; SQLAlchemy's "begin" (below) starts transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            _enter_wal_mode(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_TRANSACTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enter_wal_mode(cursor: Any) -> None:
    """Switch a SQLite database to WAL mode, waiting for other connections if needed.

    While a fresh file is being switched by one connection, another's switch fails at once with "database is
    locked" (SQLite does not call the busy handler there): processes that open a new database together retry.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_serialized(engine: Engine) -> bool:
    """True if all threads share one DBAPI connection (in-memory SQLite), so uses must not overlap."""
    return isinstance(engine.pool, StaticPool)


def store_error(error: BaseException, url: URL, doing: str) -> CheckpointStoreError:
    """The `CheckpointStoreError` to raise for a SQLAlchemy error met while ``doing`` something.

    Lost and refused connections (and SQLite's "database is locked" after the busy timeout) become
    `DatabaseUnavailableError`. The message names the database but never its password.
    """
    where = describe(url)
    reason = _redacted_text(_reason(error), url)
    if isinstance(error, exc.TimeoutError):
        return DatabaseUnavailableError(f"no free connection to {where} in time, while {doing}: {reason}")
    if isinstance(error, exc.DBAPIError):
        lost = error.connection_invalidated or error.statement is None
        locked = url.get_backend_name() == "sqlite" and "database is locked" in reason
        if lost or locked:
            what = "is busy (locked by another writer)" if locked else "is unreachable or dropped the connection"
            return DatabaseUnavailableError(
                f"{where} {what}, while {doing}: {reason}", connection_lost=error.connection_invalidated
            )
    return CheckpointStoreError(f"{doing} failed on {where}: {reason}")


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    return f"{type(original).__name__}: {text}" if text else type(original).__name__


def _redacted_text(text: str, url: URL | None = None) -> str:
    """``text`` with the URL's password (and any ``user:password@`` in it) masked."""
    if url is not None and url.password:
        text = text.replace(str(url.password), "***")
    try:
        parsed = make_url(text)
    except Exception:
        return text
    if parsed.password:
        text = text.replace(str(parsed.password), "***")
    return text
