"""The saver's SQL: SQLAlchemy Core statements over `checkpoints.schema`, compiled once per dialect.

Each statement is built with named bind parameters and compiled to the driver's SQL text the first time it
is needed; the saver then runs the text on a DBAPI connection (`checkpoints.connections.Transaction`),
so a call pays for neither building nor compiling SQL. Statements over a variable number of keys (``IN``
lists, multi-row ``VALUES``) are compiled per size; lookup lists are padded to the next power of two
(repeating a key changes nothing in a lookup), so a handful of shapes serve every size.

Upserts are per dialect: ``ON CONFLICT`` on PostgreSQL and SQLite, ``ON DUPLICATE KEY UPDATE`` on
MySQL/MariaDB. On PostgreSQL, a checkpoint and its new blobs are saved by one statement (the blobs'
``INSERT`` is a CTE), atomic without a ``BEGIN``/``COMMIT`` round trip.
"""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ironloop.checkpoints.schema import UTCDateTime, checkpoint_blobs, checkpoint_writes, checkpoints
from sqlalchemy import (
    ColumnElement,
    Dialect,
    Executable,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    false,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ClauseElement

CHECKPOINT_COLUMNS = (
    checkpoints.c.thread_id,
    checkpoints.c.checkpoint_ns,
    checkpoints.c.checkpoint_id,
    checkpoints.c.parent_checkpoint_id,
    checkpoints.c.type,
    checkpoints.c.checkpoint,
    checkpoints.c.metadata,
)
"""Columns of every checkpoint read, in this order."""

CHECKPOINT_UPDATES = ("parent_checkpoint_id", "run_id", "type", "checkpoint", "metadata", "created_at")
"""Columns a checkpoint saved again under the same id replaces."""

WRITE_UPDATES = ("channel", "type", "blob", "task_path")
"""Columns a special write (error, interrupt, ...) replaces."""

MAX_KEYS = 512
"""Most keys in one lookup statement; longer lists are split."""

MAX_ROWS = 500
"""Most rows in one multi-row ``INSERT`` (9 parameters a row stays far below every driver's limit)."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as the driver takes it: SQL text, the parameter order if the driver is positional, and
    the values of parameters the statement itself fixed (a ``LIMIT 1``, a ``SET ... = NULL``)."""

    sql: str
    names: tuple[str, ...] | None
    fixed: Mapping[str, Any]
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None
    """For a positional driver: the values in parameter order, from a mapping."""

    def bind(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.fixed:
            values = {**self.fixed, **values}
        return values if self.pick is None else self.pick(values)


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if not names:
        return lambda values: ()
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*names)


def padded(count: int) -> int:
    """The lookup size serving ``count`` keys: the next power of two."""
    size = 1
    while size < count:
        size *= 2
    return size


def _size(count: int) -> int:
    return padded(count) if count else 0


def pad(items: Sequence[Any]) -> list[Any]:
    """``items`` repeated at the end up to `padded` length (harmless in ``IN``/``OR`` lookups)."""
    return [*items, *[items[-1]] * (padded(len(items)) - len(items))]


class Statements:
    """Every statement the saver runs, for one dialect, compiled on first use and then cached."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.backend = dialect.name
        self._cache: dict[Hashable, Compiled] = {}
        self._lock = threading.Lock()
        self.time_in: Callable[[Any], Any] | None = UTCDateTime().bind_processor(dialect)
        """A `UTCDateTime` as this driver takes it: compiled statements run without SQLAlchemy's type processing
        (the saver passes everything else as the driver takes it already: text, bytes, JSON as text)."""

    def compile(self, statement: Executable) -> Compiled:
        assert isinstance(statement, ClauseElement), statement  # every statement built here is one
        compiled = statement.compile(dialect=self.dialect)
        assert isinstance(compiled, SQLCompiler), compiled
        names = tuple(compiled.positiontup or ()) if self.dialect.positional else None
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        return Compiled(compiled.string, names, fixed, None if names is None else _picker(names))

    def _cached(self, key: Hashable, build: Callable[[], Executable]) -> Compiled:
        found = self._cache.get(key)
        if found is None:
            found = self.compile(build())
            with self._lock:
                self._cache[key] = found
        return found

    # -- reads ------------------------------------------------------------------------------------------

    def checkpoint_by_id(self) -> Compiled:
        return self._cached("checkpoint_by_id", lambda: _checkpoint_rows().where(*_same_checkpoint(checkpoints)))

    def latest_checkpoint(self) -> Compiled:
        return self._cached(
            "latest",
            lambda: (
                _checkpoint_rows().where(*_same_ns(checkpoints)).order_by(checkpoints.c.checkpoint_id.desc()).limit(1)
            ),
        )

    def checkpoint_page(self, *, thread: bool, ns: bool, checkpoint: bool, before: bool, limit: bool) -> Compiled:
        """Checkpoint rows newest first; each flag adds its condition (parameters named like the columns,
        ``before`` for the cursor, ``limit``)."""

        def build() -> Select[Any]:
            query = _checkpoint_rows().where(*_conditions(thread, ns, checkpoint, before))
            query = query.order_by(checkpoints.c.checkpoint_id.desc())
            return query.limit(bindparam("limit", type_=Integer())) if limit else query

        return self._cached(("page", thread, ns, checkpoint, before, limit), build)

    def metadata_scan(self, *, thread: bool, ns: bool, checkpoint: bool, before: bool) -> Compiled:
        """Keys and metadata, newest first, for filtering on metadata."""

        def build() -> Select[Any]:
            query = select(
                checkpoints.c.thread_id,
                checkpoints.c.checkpoint_ns,
                checkpoints.c.checkpoint_id,
                checkpoints.c.metadata,
            )
            return query.where(*_conditions(thread, ns, checkpoint, before)).order_by(
                checkpoints.c.checkpoint_id.desc()
            )

        return self._cached(("scan", thread, ns, checkpoint, before), build)

    def checkpoints_by_keys(self, count: int) -> Compiled:
        """Checkpoint rows for ``count`` (padded) keys ``t{i}``, ``n{i}``, ``c{i}``."""
        size = padded(count)

        def build() -> Select[Any]:
            c = checkpoints.c
            return _checkpoint_rows().where(
                or_(
                    *(
                        and_(c.thread_id == _p(f"t{i}"), c.checkpoint_ns == _p(f"n{i}"), c.checkpoint_id == _p(f"c{i}"))
                        for i in range(size)
                    )
                )
            )

        return self._cached(("by_keys", size), build)

    def blobs_and_writes(self, channels: int, versions: int, checkpoint_ids: int) -> Compiled:
        """One namespace's blobs (channels ``b{i}``, versions ``v{j}``) and the pending writes of checkpoints
        ``i{k}``, in one result (`_blob_rows` columns). Counts are padded (`pad` the values)."""
        found = self._cache.get(("bw", channels, versions, checkpoint_ids))
        if found is not None:
            return found
        shape = (_size(channels), _size(versions), _size(checkpoint_ids))

        def build() -> Executable:
            writes = _write_rows().where(*_same_ns(checkpoint_writes), _any_id(checkpoint_writes, shape[2]))
            if not shape[0]:
                return writes
            blobs = _blob_rows().where(*_same_ns(checkpoint_blobs), _any_blob(shape[0], shape[1]))
            return union_all(blobs, writes)

        found = self._cached(("blobs_writes", *shape), build)
        self._cache[("bw", channels, versions, checkpoint_ids)] = found
        return found

    def blobs_and_writes_of_groups(self, groups: Sequence[tuple[int, int, int]]) -> Compiled:
        """Like `blobs_and_writes` for several namespaces at once (a list across threads); group ``g`` has
        parameters ``g{g}t``, ``g{g}n``, ``g{g}b{i}``, ``g{g}v{j}``, ``g{g}i{k}``. Compiled each time: rare."""
        blob_conditions = []
        write_conditions = []
        for g, (channels, versions, ids) in enumerate(groups):
            thread, ns = _p(f"g{g}t"), _p(f"g{g}n")
            if channels:
                blob_conditions.append(
                    and_(
                        checkpoint_blobs.c.thread_id == thread,
                        checkpoint_blobs.c.checkpoint_ns == ns,
                        _any_blob(_size(channels), _size(versions), prefix=f"g{g}"),
                    )
                )
            write_conditions.append(
                and_(
                    checkpoint_writes.c.thread_id == thread,
                    checkpoint_writes.c.checkpoint_ns == ns,
                    _any_id(checkpoint_writes, _size(ids), prefix=f"g{g}"),
                )
            )
        writes = _write_rows().where(or_(*write_conditions))
        if not blob_conditions:
            return self.compile(writes)
        return self.compile(union_all(_blob_rows().where(or_(*blob_conditions)), writes))

    # -- writes -----------------------------------------------------------------------------------------

    def insert_blob(self) -> Compiled:
        """One blob row (for ``executemany``), kept as it is if already there."""
        return self._cached("insert_blob", lambda: self.insert_ignore(checkpoint_blobs))

    def upsert_checkpoint(self) -> Compiled:
        return self._cached("upsert_checkpoint", lambda: self.upsert(checkpoints, CHECKPOINT_UPDATES))

    def upsert_checkpoint_with_blobs(self, count: int) -> Compiled:
        """PostgreSQL: the checkpoint (parameters named like its columns) and ``count`` new blobs (parameters
        ``b{i}_<column>``) in one atomic statement."""

        def build() -> Executable:
            if not count:
                return self.upsert(checkpoints, CHECKPOINT_UPDATES)
            blobs = postgresql.insert(checkpoint_blobs).values(
                [{c.name: _p(f"b{i}_{c.name}", c.type) for c in checkpoint_blobs.c} for i in range(count)]
            )
            new_blobs = blobs.on_conflict_do_nothing(index_elements=list(checkpoint_blobs.primary_key.columns))
            return self.upsert(checkpoints, CHECKPOINT_UPDATES).add_cte(new_blobs.cte("new_blobs"))

        return self._cached(("upsert_checkpoint_blobs", count), build)

    def insert_writes(self, count: int, *, replace: bool) -> Compiled:
        """``count`` write rows (``w{i}_<column>``) in one statement: kept if there (first write wins), or
        replacing (special writes)."""

        def build() -> Executable:
            rows = [{c.name: _p(f"w{i}_{c.name}", c.type) for c in checkpoint_writes.c} for i in range(count)]
            if replace:
                return self.upsert(checkpoint_writes, WRITE_UPDATES, rows)
            return self.insert_ignore(checkpoint_writes, rows)

        return self._cached(("insert_writes", count, replace), build)

    def delete_thread(self) -> list[Compiled]:
        def build(table: Table) -> Executable:
            return delete(table).where(table.c.thread_id == _p("thread_id"))

        return [
            self._cached(("delete_thread", table.name), functools.partial(build, table))
            for table in (checkpoint_writes, checkpoints, checkpoint_blobs)
        ]

    def copy_thread(self) -> list[Compiled]:
        """Copies of a thread's rows (``source`` → ``target``; copied checkpoints get ``created_at`` = ``now``)."""

        def build(table: Table) -> Executable:
            columns = [c for c in table.c if c.name != "thread_id"]
            sources = [_p("now", UTCDateTime()) if c.name == "created_at" else c for c in columns]
            query = select(_p("target", table.c.thread_id.type), *sources).where(table.c.thread_id == _p("source"))
            return self.copy_rows(table).from_select(["thread_id", *(c.name for c in columns)], query)

        return [
            self._cached(("copy", table.name), functools.partial(build, table))
            for table in (checkpoint_blobs, checkpoints, checkpoint_writes)
        ]

    def checkpoints_of_runs(self, count: int) -> Compiled:
        size = padded(count)
        return self._cached(
            ("of_runs", size),
            lambda: select(checkpoints.c.thread_id, checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id).where(
                checkpoints.c.run_id.in_([_p(f"r{i}") for i in range(size)])
            ),
        )

    def metadata_of_threads(self, count: int) -> Compiled:
        size = padded(count)
        return self._cached(
            ("meta_of_threads", size),
            lambda: select(checkpoints.c.thread_id, checkpoints.c.metadata).where(
                checkpoints.c.thread_id.in_([_p(f"t{i}") for i in range(size)])
            ),
        )

    def checkpoint_ids_of_thread(self) -> Compiled:
        return self._cached(
            "ids_of_thread",
            lambda: select(checkpoints.c.checkpoint_ns, checkpoints.c.checkpoint_id).where(
                checkpoints.c.thread_id == _p("thread_id")
            ),
        )

    def checkpoints_of_namespace(self) -> Compiled:
        return self._cached("of_ns", lambda: _checkpoint_rows().where(*_same_ns(checkpoints)))

    def blob_keys_of_namespace(self) -> Compiled:
        return self._cached(
            "blob_keys_of_ns",
            lambda: select(checkpoint_blobs.c.channel, checkpoint_blobs.c.version).where(*_same_ns(checkpoint_blobs)),
        )

    def delete_checkpoints(self, count: int) -> list[Compiled]:
        """Delete ``count`` (padded) checkpoints ``i{j}`` of a namespace with their writes, then unset the
        parent of checkpoints that pointed at them."""
        size = padded(count)
        return [
            self._cached(
                ("delete_writes", size),
                lambda: delete(checkpoint_writes).where(*_same_ns(checkpoint_writes), _any_id(checkpoint_writes, size)),
            ),
            self._cached(
                ("delete_checkpoints", size),
                lambda: delete(checkpoints).where(*_same_ns(checkpoints), _any_id(checkpoints, size)),
            ),
            self._cached(
                ("unparent", size),
                lambda: (
                    update(checkpoints)
                    .where(
                        *_same_ns(checkpoints),
                        checkpoints.c.parent_checkpoint_id.in_([_p(f"i{j}") for j in range(size)]),
                    )
                    .values(parent_checkpoint_id=None)
                ),
            ),
        ]

    def delete_blobs(self, count: int) -> Compiled:
        """Delete ``count`` (padded) blobs of a namespace, by exact (channel ``b{i}``, version ``v{i}``) pairs."""
        size = padded(count)
        c = checkpoint_blobs.c
        return self._cached(
            ("delete_blobs", size),
            lambda: delete(checkpoint_blobs).where(
                *_same_ns(checkpoint_blobs),
                or_(*(and_(c.channel == _p(f"b{i}"), c.version == _p(f"v{i}")) for i in range(size))),
            ),
        )

    # -- dialect differences ----------------------------------------------------------------------------

    def _insert(self, table: Table) -> Insert:
        if self.backend == "postgresql":
            return postgresql.insert(table)
        if self.backend == "sqlite":
            return sqlite.insert(table)
        return mysql.insert(table)

    def insert_ignore(self, table: Table, rows: list[dict[str, Any]] | None = None) -> Insert:
        """INSERT that leaves an existing row with the same primary key as it is."""
        statement: Any = self._insert(table)
        if rows is not None:
            statement = statement.values(rows)
        if self.backend in ("postgresql", "sqlite"):
            return statement.on_conflict_do_nothing(index_elements=list(table.primary_key.columns))
        first = next(iter(table.primary_key.columns))
        return statement.on_duplicate_key_update({first.name: first})

    def upsert(self, table: Table, columns: Sequence[str], rows: list[dict[str, Any]] | None = None) -> Insert:
        """INSERT that replaces these columns of an existing row with the same primary key."""
        statement: Any = self._insert(table)
        if rows is not None:
            statement = statement.values(rows)
        if self.backend in ("postgresql", "sqlite"):
            return statement.on_conflict_do_update(
                index_elements=list(table.primary_key.columns),
                set_={name: statement.excluded[name] for name in columns},
            )
        return statement.on_duplicate_key_update({name: statement.inserted[name] for name in columns})

    def copy_rows(self, table: Table) -> Insert:
        """INSERT for ``from_select`` that skips rows already there. MySQL finds ``ON DUPLICATE KEY UPDATE``
        ambiguous when the SELECT reads the same table; its ``INSERT IGNORE`` is safe here, as the rows come
        from the same columns and cannot be truncated."""
        if self.backend in ("postgresql", "sqlite"):
            return self.insert_ignore(table)
        return self._insert(table).prefix_with("IGNORE")


def _p(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


def _checkpoint_rows() -> Select[Any]:
    return select(*CHECKPOINT_COLUMNS)


def _same_ns(table: Table) -> tuple[ColumnElement[bool], ...]:
    return (table.c.thread_id == _p("thread_id"), table.c.checkpoint_ns == _p("checkpoint_ns"))


def _same_checkpoint(table: Table) -> tuple[ColumnElement[bool], ...]:
    return (*_same_ns(table), table.c.checkpoint_id == _p("checkpoint_id"))


def _conditions(thread: bool, ns: bool, checkpoint: bool, before: bool) -> list[ColumnElement[bool]]:
    c = checkpoints.c
    conditions = []
    if thread:
        conditions.append(c.thread_id == _p("thread_id"))
    if ns:
        conditions.append(c.checkpoint_ns == _p("checkpoint_ns"))
    if checkpoint:
        conditions.append(c.checkpoint_id == _p("checkpoint_id"))
    if before:
        conditions.append(c.checkpoint_id < _p("before"))
    return conditions


def _any_id(table: Table, count: int, prefix: str = "") -> ColumnElement[bool]:
    if not count:
        return false()
    return table.c.checkpoint_id.in_([_p(f"{prefix}i{j}") for j in range(count)])


def _any_blob(channels: int, versions: int, prefix: str = "") -> ColumnElement[bool]:
    """Channel in ``b{i}`` and version in ``v{j}``: IN lists on the primary key's columns, which every planner
    turns into index lookups (an OR of pairs makes SQLite scan the thread). Versions carry a random part,
    so the cross product fetches next to nothing more than the pairs asked for."""
    c = checkpoint_blobs.c
    return and_(
        c.channel.in_([_p(f"{prefix}b{i}") for i in range(channels)]),
        c.version.in_([_p(f"{prefix}v{j}") for j in range(versions)]),
    )


def _blob_rows() -> Select[Any]:
    """Blob rows, shaped like `_write_rows` so both come back from one ``UNION ALL``."""
    b = checkpoint_blobs.c
    return select(
        literal_column("'b'").label("kind"),
        b.thread_id,
        b.checkpoint_ns,
        literal_column("''").label("checkpoint_id"),
        b.channel,
        b.version.label("key"),
        literal_column("0").label("idx"),
        literal_column("''").label("task_path"),
        b.type,
        b.blob,
    )


def _write_rows() -> Select[Any]:
    w = checkpoint_writes.c
    return select(
        literal_column("'w'").label("kind"),
        w.thread_id,
        w.checkpoint_ns,
        w.checkpoint_id,
        w.channel,
        w.task_id.label("key"),
        w.idx,
        w.task_path,
        w.type,
        w.blob,
    )
