"""`SQLAlchemySaver`: one LangGraph checkpointer for SQLite, PostgreSQL and MySQL/MariaDB, sync and async.

Layout (`checkpoints.schema`): a checkpoint row holds the serialized checkpoint without its large channel
values; each such value is a blob row per (channel, version), written only in the step that gave the
channel a new version, so a long message list is not rewritten while tools run. Pending writes are rows per
(task, index): a normal write is inserted if absent (the first write wins: a task run again after a resume
does not replace what was recorded), a special one (error, interrupt, resume, scheduled) replaces.

Reads are one query for the checkpoint rows and one for all their blobs and pending writes, whether for one
checkpoint (``get_tuple``) or a page (``list``). ``put`` is one transaction (one statement on PostgreSQL),
``put_writes`` one statement. The SQL is SQLAlchemy Core compiled once per dialect (`checkpoints.statements`)
and run on the engine's connections (`checkpoints.connections`), which is what makes the
saver safe to share between threads and tasks.

One code path: the async methods run the sync ones on the saver's own small thread pool (never the event
loop's default executor, which tools share), so ``invoke`` and ``ainvoke`` can use the same saver and the
event loop never waits on the database.

Failures: a database that cannot be reached or drops the connection raises `DatabaseUnavailableError`; the
same saver works again once the database is back (a dead connection is dropped from the pool, and pooled
connections are pinged before use). A checkpoint that cannot be decoded raises `CorruptCheckpointError`
naming it; the thread's other checkpoints stay readable. So does one that names a type outside the
serializer's allow-list (`checkpoints.serde`): reading a checkpoint never imports or calls what a row names.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import random
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from ironloop.checkpoints.connections import Connections, Transaction
from ironloop.checkpoints.database import is_serialized, make_engine
from ironloop.checkpoints.errors import (
    CorruptCheckpointError,
    DatabaseUnavailableError,
    InvalidDatabaseURLError,
    InvalidKeyError,
)
from ironloop.checkpoints.fit import storable
from ironloop.checkpoints.migrate import ensure_schema
from ironloop.checkpoints.schema import KEY_LENGTH
from ironloop.checkpoints.serde import AllowedType, AllowListSerializer
from ironloop.checkpoints.statements import MAX_KEYS, MAX_ROWS, Compiled, Statements, pad
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import URL, Engine

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 8
"""Threads that run the async methods: enough to keep the connection pool busy, few enough to stay light."""

INLINE_STR_MAX = 256
"""Scalars stay in the checkpoint row (strings only when shorter than this); everything else is a blob."""

PRUNE_STRATEGIES = ("keep_latest", "delete")

_BLOB_REFS = "ironloop_blobs"
"""Payload key: the channels whose value is a blob, with the version to read (dropped on load)."""

SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")

# Column positions in checkpoint rows (`statements.CHECKPOINT_COLUMNS`).
_THREAD, _NS, _ID, _PARENT, _TYPE, _PAYLOAD, _METADATA = range(7)

_BlobKey = tuple[str, str, str, str]
"""(thread id, namespace, channel, version)"""
_WriteRow = tuple[str, str, int, str, str, bytes]
"""(task path, task id, idx, channel, type, blob)"""


class _Decoded(NamedTuple):
    """A checkpoint row with its payload decoded (or the error that stopped it) and the blobs it needs."""

    row: Sequence[Any]
    payload: dict[str, Any] | None
    error: CorruptCheckpointError | None
    blob_keys: list[tuple[str, str]]


class SQLAlchemySaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on a SQLAlchemy engine for SQLite, PostgreSQL or MySQL/MariaDB.

    ``SQLAlchemySaver.from_url(url)`` makes and owns its engine (disposed by `close`, or on leaving a
    ``with`` block); ``SQLAlchemySaver(engine)`` uses an engine you manage (`checkpoints.make_engine` makes
    one configured as ``from_url`` does). The schema is migrated on first use unless ``migrate=False`` (then
    run `checkpoints.migrate.upgrade` yourself). ``max_workers`` sizes the thread pool of the async methods.

    Values are read back by an `AllowListSerializer`: LangGraph's safe types (messages, interrupts, commands,
    datetimes, ...) and ``allowed_types`` (classes of your own state) are rebuilt; a stored value naming any
    other type is refused as corrupt, never imported or called. ``serde`` replaces that serializer entirely.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        serde: SerializerProtocol | None = None,
        allowed_types: Iterable[AllowedType] = (),
        migrate: bool = True,
        max_workers: int = DEFAULT_MAX_WORKERS,
        owns_engine: bool = False,
    ) -> None:
        super().__init__(serde=serde or AllowListSerializer(allowed_types))
        backend = engine.dialect.name
        if backend not in SUPPORTED_BACKENDS:
            raise InvalidDatabaseURLError(
                f"SQLAlchemySaver supports sqlite, postgresql and mysql/mariadb, not {backend}"
            )
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.engine = engine
        self.max_workers = max_workers
        self._owns_engine = owns_engine
        self._sql = Statements(engine.dialect)
        self._connections = Connections(engine)
        self._one_statement_put = backend == "postgresql"
        self._ascii_keys = backend in ("mysql", "mariadb")
        self._needs_setup = migrate
        self._setup_lock = threading.Lock()
        self._serial: AbstractContextManager[Any] = threading.RLock() if is_serialized(engine) else nullcontext()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str | URL | None = None,
        *,
        serde: SerializerProtocol | None = None,
        allowed_types: Iterable[AllowedType] = (),
        migrate: bool = True,
        max_workers: int = DEFAULT_MAX_WORKERS,
        **engine_options: Any,
    ) -> SQLAlchemySaver:
        """A saver on its own engine for ``url`` (default: ``$IRONLOOP_DB_URL`` or ``sqlite:///./ironloop.db``).

        ``engine_options`` go to `sqlalchemy.create_engine` (see `checkpoints.database.make_engine`).
        """
        engine = make_engine(url, **engine_options)
        return cls(
            engine,
            serde=serde,
            allowed_types=allowed_types,
            migrate=migrate,
            max_workers=max_workers,
            owns_engine=True,
        )

    @property
    def url(self) -> URL:
        return self.engine.url

    def setup(self) -> None:
        """Migrate the schema to the newest revision if needed; done automatically on first use."""
        if not self._needs_setup:
            return
        with self._setup_lock:
            if self._needs_setup:
                with self._serial:
                    ensure_schema(self.engine)
                self._needs_setup = False

    def close(self) -> None:
        """Stop the async worker threads, and dispose of the engine if the saver made it."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._connections.close()
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> SQLAlchemySaver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SQLAlchemySaver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """`close`, without blocking the event loop (on a thread of its own: it stops the saver's pool)."""
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def close() -> None:
            try:
                self.close()
            except BaseException as error:
                loop.call_soon_threadsafe(closed.set_exception, error)
            else:
                loop.call_soon_threadsafe(closed.set_result, None)

        threading.Thread(target=close, name="ironloop-checkpoints-close", daemon=True).start()
        await closed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- reads ------------------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (its ``checkpoint_id``), or the thread's latest, with its writes."""
        configurable = config["configurable"]
        params = {
            "thread_id": self._key(configurable["thread_id"], "thread_id"),
            "checkpoint_ns": self._key(configurable.get("checkpoint_ns", ""), "checkpoint_ns"),
        }
        if checkpoint_id := get_checkpoint_id(config):
            params["checkpoint_id"] = checkpoint_id
            statement = self._sql.checkpoint_by_id()
        else:
            statement = self._sql.latest_checkpoint()

        def read(db: Transaction) -> list[CheckpointTuple | CorruptCheckpointError]:
            rows = db.rows(statement, params)
            return self._load(db, rows) if rows else []

        found = self._run("loading a checkpoint", read)
        if not found:
            return None
        loaded = found[0]
        if isinstance(loaded, CorruptCheckpointError):
            raise loaded
        return loaded

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of ``config``'s thread (and namespace, if given), or of all threads.

        ``filter`` matches metadata keys by equality; ``before`` keeps checkpoints older than its id; ``limit``
        applies after both. A corrupt checkpoint raises `CorruptCheckpointError` when the iteration reaches it.
        """
        for item in self._list(config, filter, before, limit):
            if isinstance(item, CorruptCheckpointError):
                raise item
            yield item

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple | CorruptCheckpointError]:
        if limit is not None and limit <= 0:
            return []
        params: dict[str, Any] = {}
        if config is not None:
            configurable = config["configurable"]
            params["thread_id"] = self._key(configurable["thread_id"], "thread_id")
            if (checkpoint_ns := configurable.get("checkpoint_ns")) is not None:
                params["checkpoint_ns"] = self._key(checkpoint_ns, "checkpoint_ns")
            if checkpoint_id := get_checkpoint_id(config):
                params["checkpoint_id"] = checkpoint_id
        if before is not None and (before_id := get_checkpoint_id(before)):
            params["before"] = before_id
        shape = {
            "thread": "thread_id" in params,
            "ns": "checkpoint_ns" in params,
            "checkpoint": "checkpoint_id" in params,
            "before": "before" in params,
        }
        if filter:
            query = self._sql.metadata_scan(**shape)
        else:
            query = self._sql.checkpoint_page(**shape, limit=limit is not None)
            if limit is not None:
                params["limit"] = int(limit)

        def read(db: Transaction) -> list[CheckpointTuple | CorruptCheckpointError]:
            rows = self._filtered_rows(db, query, params, filter, limit) if filter else db.rows(query, params)
            return self._load(db, rows) if rows else []

        return self._run("listing checkpoints", read)

    def _filtered_rows(
        self, db: Transaction, scan: Any, params: dict[str, Any], filter: dict[str, Any], limit: int | None
    ) -> builtins.list[Sequence[Any]]:
        """Rows whose metadata matches ``filter``: metadata is scanned newest first until ``limit`` match,
        then only the matching rows' payloads are read."""
        matches: list[tuple[str, str, str]] = []
        for thread_id, checkpoint_ns, checkpoint_id, metadata in db.rows(scan, params):
            found = _json(metadata)
            if all(found.get(key) == value for key, value in filter.items()):
                matches.append((thread_id, checkpoint_ns, checkpoint_id))
                if limit is not None and len(matches) >= limit:
                    break
        rows: list[Sequence[Any]] = []
        for chunk in _chunks(matches):
            values: dict[str, Any] = {}
            for i, (thread_id, checkpoint_ns, checkpoint_id) in enumerate(pad(chunk)):
                values |= {f"t{i}": thread_id, f"n{i}": checkpoint_ns, f"c{i}": checkpoint_id}
            rows += db.rows(self._sql.checkpoints_by_keys(len(chunk)), values)
        order = {key: position for position, key in enumerate(matches)}
        return sorted(rows, key=lambda r: order[(r[_THREAD], r[_NS], r[_ID])])

    def _load(
        self, db: Transaction, rows: Sequence[Sequence[Any]]
    ) -> builtins.list[CheckpointTuple | CorruptCheckpointError]:
        """Checkpoint rows → tuples, with one more query for all their blobs and pending writes."""
        decoded = [self._decode_row(row) for row in rows]
        blobs: dict[_BlobKey, tuple[str, bytes]] = {}
        writes: dict[tuple[str, str, str], list[_WriteRow]] = defaultdict(list)
        for (
            kind,
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            channel,
            key,
            idx,
            task_path,
            type_,
            blob,
        ) in self._blobs_and_writes(db, decoded):
            if kind == "b":
                blobs[(thread_id, checkpoint_ns, channel, key)] = (type_, blob)
            else:
                writes[(thread_id, checkpoint_ns, checkpoint_id)].append((task_path, key, idx, channel, type_, blob))
        return [self._assemble(item, blobs, writes) for item in decoded]

    def _blobs_and_writes(self, db: Transaction, decoded: builtins.list[_Decoded]) -> builtins.list[Sequence[Any]]:
        """The blobs the checkpoints need and their pending writes: one query for one namespace (the usual
        page, or a single checkpoint), a few for a list across threads or a very long page."""
        if len(decoded) == 1 and len(decoded[0].blob_keys) <= 1:  # get_tuple's usual case, kept short
            row, keys = decoded[0].row, decoded[0].blob_keys
            values: dict[str, Any] = {"thread_id": row[_THREAD], "checkpoint_ns": row[_NS], "i0": row[_ID]}
            if keys:
                values["b0"], values["v0"] = keys[0]
            return db.rows(self._sql.blobs_and_writes(len(keys), len(keys), 1), values)
        groups: dict[tuple[str, str], tuple[set[str], set[str], list[str]]] = {}
        for item in decoded:
            row = item.row
            group = groups.get((row[_THREAD], row[_NS]))
            if group is None:
                group = groups[(row[_THREAD], row[_NS])] = (set(), set(), [])
            for channel, version in item.blob_keys:
                group[0].add(channel)
                group[1].add(version)
            group[2].append(row[_ID])
        if len(groups) == 1:
            ((thread_id, checkpoint_ns), (channels, versions, ids)) = next(iter(groups.items()))
            if max(len(channels), len(versions), len(ids)) <= MAX_KEYS:
                values = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
                return db.rows(self._sql.blobs_and_writes(*_lookup_values(values, "", channels, versions, ids)), values)
        found: list[Sequence[Any]] = []
        parts = []
        for (thread_id, checkpoint_ns), (channels, versions, ids) in groups.items():
            for channel_chunk in _chunks(sorted(channels)) if channels else [[]]:
                for version_chunk in _chunks(sorted(versions)) if versions else [[]]:
                    for id_chunk in _chunks(ids):
                        parts.append((thread_id, checkpoint_ns, channel_chunk, version_chunk, id_chunk))
        for batch in _chunks(parts, 16):
            values = {}
            shape = []
            for g, (thread_id, checkpoint_ns, channels_, versions_, ids_) in enumerate(batch):
                values |= {f"g{g}t": thread_id, f"g{g}n": checkpoint_ns}
                shape.append(_lookup_values(values, f"g{g}", channels_, versions_, ids_))
            found += db.rows(self._sql.blobs_and_writes_of_groups(shape), values)
        return found

    def _decode_row(self, row: Sequence[Any]) -> _Decoded:
        try:
            payload = self.serde.loads_typed((row[_TYPE], bytes(row[_PAYLOAD])))
            refs = payload.pop(_BLOB_REFS, None)
            if refs is None:  # not written by this saver: look for a blob of every channel not inline
                inline = payload.get("channel_values") or {}
                refs = {ch: str(v) for ch, v in payload["channel_versions"].items() if ch not in inline}
            blob_keys = list(refs.items())
        except Exception as error:
            return _Decoded(row, None, _corrupt(row, f"cannot decode the checkpoint: {_why(error)}"), [])
        return _Decoded(row, payload, None, blob_keys)

    def _assemble(
        self,
        item: _Decoded,
        blobs: dict[_BlobKey, tuple[str, bytes]],
        writes: dict[tuple[str, str, str], builtins.list[_WriteRow]],
    ) -> CheckpointTuple | CorruptCheckpointError:
        if item.error is not None:
            return item.error
        row, payload = item.row, item.payload
        assert payload is not None
        thread_id, checkpoint_ns, checkpoint_id = row[_THREAD], row[_NS], row[_ID]
        values = payload.get("channel_values") or {}  # the payload was just decoded: ours to fill in
        for channel, version in item.blob_keys:
            stored = blobs.get((thread_id, checkpoint_ns, channel, version))
            if stored is None:
                continue
            try:
                values[channel] = self.serde.loads_typed((stored[0], bytes(stored[1])))
            except Exception as error:
                return _corrupt(row, f"cannot decode channel {channel!r} at version {version!r}: {_why(error)}")
        pending: list[PendingWrite] = []
        stored_writes = writes.get((thread_id, checkpoint_ns, checkpoint_id), ())
        if len(stored_writes) > 1:  # rows start with `writes_sort_key`'s (task_path, task_id, idx)
            stored_writes = sorted(stored_writes)
        for task_path, task_id, idx, channel, type_, blob in stored_writes:
            try:
                pending.append((task_id, channel, self.serde.loads_typed((type_, bytes(blob)))))
            except Exception as error:
                return _corrupt(
                    row,
                    f"cannot decode pending write {idx} of task {task_id!r} ({task_path!r}) to {channel!r}: "
                    f"{_why(error)}",
                )
        try:
            metadata = _json(row[_METADATA])
        except ValueError as error:
            return _corrupt(row, f"cannot decode the metadata: {_why(error)}")
        payload["channel_values"] = values
        parent = row[_PARENT]
        return CheckpointTuple(
            config=_config(thread_id, checkpoint_ns, checkpoint_id),
            checkpoint=payload,  # type: ignore[arg-type]
            metadata=metadata,  # type: ignore[arg-type]
            parent_config=_config(thread_id, checkpoint_ns, parent) if parent else None,
            pending_writes=pending,
        )

    # -- writes -----------------------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, and blobs for the channels ``new_versions`` says changed, atomically."""
        configurable = config["configurable"]
        thread_id = self._key(configurable["thread_id"], "thread_id")
        checkpoint_ns = self._key(configurable.get("checkpoint_ns", ""), "checkpoint_ns")
        checkpoint_id = self._key(checkpoint["id"], "checkpoint id", ascii_only=True)
        parent_id = configurable.get("checkpoint_id")
        inline: dict[str, Any] = {}
        refs: dict[str, str] = {}
        blobs: list[dict[str, Any]] = []
        versions = checkpoint["channel_versions"]
        for channel, value in checkpoint["channel_values"].items():
            if _inline(value):
                inline[channel] = value
            elif channel in new_versions:
                version = refs[channel] = self._key(str(new_versions[channel]), "version", ascii_only=True)
                type_, blob = self.serde.dumps_typed(value)
                blobs.append(
                    {
                        "thread_id": thread_id,
                        "checkpoint_ns": checkpoint_ns,
                        "channel": self._key(channel, "channel", ascii_only=True),
                        "version": version,
                        "type": type_,
                        "blob": blob,
                    }
                )
            elif channel in versions:
                refs[channel] = str(versions[channel])  # unchanged: its blob is already stored
        type_, payload = self.serde.dumps_typed({**checkpoint, "channel_values": inline, _BLOB_REFS: refs})
        stored_metadata = get_serializable_checkpoint_metadata(config, metadata)
        run_id = stored_metadata.get("run_id")
        row = {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": parent_id,
            "run_id": self._key(run_id, "run_id") if run_id is not None else None,
            "type": type_,
            "checkpoint": payload,
            "metadata": _dump_json(stored_metadata),
            "created_at": self._time(datetime.now(UTC)),
        }
        if self._one_statement_put and len(blobs) <= MAX_ROWS:
            for i, blob_row in enumerate(blobs):
                row.update({f"b{i}_{name}": value for name, value in blob_row.items()})
            statement = self._sql.upsert_checkpoint_with_blobs(len(blobs))
            self._run("saving a checkpoint", lambda db: db.run(statement, row), write=True)
        else:

            def save(db: Transaction) -> None:
                if blobs:
                    db.run_many(self._sql.insert_blob(), blobs)
                db.run(self._sql.upsert_checkpoint(), row)

            self._run("saving a checkpoint", save, write=True, atomic=True)
        return _config(thread_id, checkpoint_ns, checkpoint_id)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against a checkpoint in one statement: normal writes are kept if already
        there (first write wins), special ones (error, interrupt, ...) replace what was there."""
        if not writes:
            return
        writes = list(writes)  # LangGraph passes a deque
        configurable = config["configurable"]
        thread_id = self._key(configurable["thread_id"], "thread_id")
        checkpoint_ns = self._key(configurable.get("checkpoint_ns", ""), "checkpoint_ns")
        checkpoint_id = self._key(configurable["checkpoint_id"], "checkpoint id", ascii_only=True)
        task_id = self._key(task_id, "task id", ascii_only=True)
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        batches: list[tuple[Compiled, dict[str, Any]]] = []
        for start in range(0, len(writes), MAX_ROWS):
            values: dict[str, Any] = {}
            for n, (channel, value) in enumerate(writes[start : start + MAX_ROWS]):
                type_, blob = self.serde.dumps_typed(value)
                values |= {
                    f"w{n}_thread_id": thread_id,
                    f"w{n}_checkpoint_ns": checkpoint_ns,
                    f"w{n}_checkpoint_id": checkpoint_id,
                    f"w{n}_task_id": task_id,
                    f"w{n}_idx": WRITES_IDX_MAP.get(channel, start + n),
                    f"w{n}_channel": self._key(channel, "channel"),
                    f"w{n}_type": type_,
                    f"w{n}_blob": blob,
                    f"w{n}_task_path": task_path,
                }
            batches.append((self._sql.insert_writes(min(MAX_ROWS, len(writes) - start), replace=replace), values))

        def save(db: Transaction) -> None:
            for statement, batch in batches:
                db.run(statement, batch)

        self._run("saving pending writes", save, write=True, atomic=len(batches) > 1)

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of a thread (all namespaces)."""
        params = {"thread_id": self._key(thread_id, "thread_id")}

        def remove(db: Transaction) -> None:
            for statement in self._sql.delete_thread():
                db.run(statement, params)

        self._run("deleting a thread", remove, write=True, atomic=True)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of a thread to another thread id (rows already there stay)."""
        params = {
            "source": self._key(source_thread_id, "thread_id"),
            "target": self._key(target_thread_id, "thread_id"),
            "now": self._time(datetime.now(UTC)),
        }
        if params["source"] == params["target"]:
            return

        def copy(db: Transaction) -> None:
            for statement in self._sql.copy_thread():
                db.run(statement, params)

        self._run("copying a thread", copy, write=True, atomic=True)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (with their writes, and blobs no other checkpoint uses) made by these runs."""
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run ids, not a str")
        run_ids = [self._key(r, "run_id") for r in run_ids]
        if not run_ids:
            return

        def remove(db: Transaction) -> None:
            doomed: dict[tuple[str, str], list[str]] = defaultdict(list)
            for chunk in _chunks(run_ids):
                values = {f"r{i}": run_id for i, run_id in enumerate(pad(chunk))}
                for thread_id, checkpoint_ns, checkpoint_id in db.rows(
                    self._sql.checkpoints_of_runs(len(chunk)), values
                ):
                    doomed[(thread_id, checkpoint_ns)].append(checkpoint_id)
            for (thread_id, checkpoint_ns), checkpoint_ids in doomed.items():
                self._delete_checkpoints(db, thread_id, checkpoint_ns, checkpoint_ids)
                self._collect_blobs(db, thread_id, checkpoint_ns)

        self._run("deleting runs", remove, write=True, atomic=True)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps the latest checkpoint of each namespace (its writes and the
        blobs it uses) and deletes the others; ``"delete"`` deletes the threads. One transaction per thread.

        ``"keep_latest"`` refuses (`NotImplementedError`, nothing pruned) threads that use a ``DeltaChannel``,
        whose latest value is rebuilt from older checkpoints.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"unknown prune strategy {strategy!r}; expected one of {', '.join(PRUNE_STRATEGIES)}")
        thread_ids = [self._key(t, "thread_id") for t in thread_ids]
        if strategy == "delete":
            for thread_id in thread_ids:
                self.delete_thread(thread_id)
            return

        def uses_delta_channels(db: Transaction) -> set[str]:
            delta: set[str] = set()
            for chunk in _chunks(thread_ids):
                values = {f"t{i}": thread_id for i, thread_id in enumerate(pad(chunk))}
                for thread_id, metadata in db.rows(self._sql.metadata_of_threads(len(chunk)), values):
                    found = _json(metadata)
                    if "counters_since_delta_snapshot" in found or "delta_writes_versioned" in found:
                        delta.add(thread_id)
            return delta

        if delta := self._run("pruning threads", uses_delta_channels):
            raise NotImplementedError(
                f"keep_latest cannot prune threads that use a DeltaChannel: {', '.join(sorted(delta))}"
            )

        def keep_latest(db: Transaction, thread_id: str) -> None:
            namespaces: dict[str, list[str]] = defaultdict(list)
            for checkpoint_ns, checkpoint_id in db.rows(self._sql.checkpoint_ids_of_thread(), {"thread_id": thread_id}):
                namespaces[checkpoint_ns].append(checkpoint_id)
            for checkpoint_ns, checkpoint_ids in namespaces.items():
                latest = max(checkpoint_ids)
                if doomed := [c for c in checkpoint_ids if c != latest]:
                    self._delete_checkpoints(db, thread_id, checkpoint_ns, doomed)
                    self._collect_blobs(db, thread_id, checkpoint_ns)

        for thread_id in thread_ids:
            self._run("pruning a thread", functools.partial(keep_latest, thread_id=thread_id), write=True, atomic=True)

    def _delete_checkpoints(
        self, db: Transaction, thread_id: str, checkpoint_ns: str, checkpoint_ids: builtins.list[str]
    ) -> None:
        """Delete checkpoints and their writes; checkpoints whose parent is gone are left without one."""
        for chunk in _chunks(checkpoint_ids):
            values = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
            values |= {f"i{j}": checkpoint_id for j, checkpoint_id in enumerate(pad(chunk))}
            for statement in self._sql.delete_checkpoints(len(chunk)):
                db.run(statement, values)

    def _collect_blobs(self, db: Transaction, thread_id: str, checkpoint_ns: str) -> None:
        """Delete the namespace's blobs that no remaining checkpoint uses."""
        namespace = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
        used: set[tuple[str, str]] = set()
        for row in db.rows(self._sql.checkpoints_of_namespace(), namespace):
            decoded = self._decode_row(row)
            if decoded.error is not None:
                return  # what a corrupt checkpoint uses is unknown: keep every blob
            used.update(decoded.blob_keys)
        stored = db.rows(self._sql.blob_keys_of_namespace(), namespace)
        garbage = [(channel, version) for channel, version in stored if (channel, version) not in used]
        for chunk in _chunks(garbage):
            values = dict(namespace)
            for i, (channel, version) in enumerate(pad(chunk)):
                values |= {f"b{i}": channel, f"v{i}": version}
            db.run(self._sql.delete_blobs(len(chunk)), values)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """``"<32-digit counter>.<random fraction>"``: sortable as text, and unique per step (as PostgresSaver)."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- async twins ------------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._in_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in await self._in_thread(self._list, config, filter, before, limit):
            if isinstance(item, CorruptCheckpointError):
                raise item
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._in_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._in_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._in_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._in_thread(self.delete_for_runs, run_ids)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._in_thread(functools.partial(self.prune, strategy=strategy), thread_ids)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), function, *args)

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="ironloop-checkpoints")
            return self._executor

    # -- plumbing ---------------------------------------------------------------------------------------

    def _run(self, doing: str, work: Callable[[Transaction], T], *, write: bool = False, atomic: bool = False) -> T:
        """Run ``work`` in a `Transaction` (see `checkpoints.connections`).

        Every operation of the saver is idempotent, so one that lost its connection midway (a pooled
        connection the server had closed) is run once more on a fresh connection. A database that cannot be
        reached fails at once: `DatabaseUnavailableError`.
        """
        self.setup()
        for attempt in range(2):
            try:
                with self._serial, Transaction(self._connections, doing, write=write, atomic=atomic) as db:
                    return work(db)
            except DatabaseUnavailableError as error:
                if attempt or not error.connection_lost:
                    raise
        raise AssertionError("unreachable")

    def _key(self, value: Any, what: str, *, ascii_only: bool = False) -> str:
        text = value if isinstance(value, str) else str(value)
        if len(text) > KEY_LENGTH:
            raise InvalidKeyError(
                f"{what} is {len(text)} characters long, more than the {KEY_LENGTH} that fit: {text[:60]!r}…"
            )
        if not storable(text):
            raise InvalidKeyError(f"{what} {text!r} holds a NUL or a lone surrogate, which no database stores as text")
        if ascii_only and self._ascii_keys and not text.isascii():
            raise InvalidKeyError(f"{what} {text!r} is not ASCII, which MySQL/MariaDB keys require")
        return text

    def _time(self, value: datetime) -> Any:
        return self._sql.time_in(value) if self._sql.time_in else value


def _lookup_values(values: dict[str, Any], prefix: str, channels: Any, versions: Any, ids: Any) -> tuple[int, int, int]:
    """Fill a lookup's parameters: channels ``b{i}`` and versions ``v{j}`` of the blobs, checkpoint ids
    ``i{k}`` of the writes (each list padded); returns the counts for `Statements.blobs_and_writes`."""
    for names, items in ((_NAMES[prefix, "b"], channels), (_NAMES[prefix, "v"], versions), (_NAMES[prefix, "i"], ids)):
        if items:
            values.update(zip(names, pad(list(items)), strict=False))
    return len(channels), len(versions), len(ids)


class _Names(dict[tuple[str, str], tuple[str, ...]]):
    """Parameter names ``<prefix><letter><n>`` for n < MAX_KEYS, made once per prefix."""

    def __missing__(self, key: tuple[str, str]) -> tuple[str, ...]:
        names = self[key] = tuple(f"{key[0]}{key[1]}{n}" for n in range(MAX_KEYS))
        return names


_NAMES = _Names()


def _inline(value: Any) -> bool:
    """Small scalars live in the checkpoint row itself; anything else gets a blob per version."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and len(value) < INLINE_STR_MAX


def _json(value: Any) -> dict[str, Any]:
    """Metadata as stored: drivers give JSON columns back as text (SQLite, MySQL) or parsed (psycopg)."""
    if value is None:
        return {}
    if isinstance(value, (str, bytes, bytearray)):
        return json.loads(value)
    return value


def _dump_json(metadata: Any) -> str:
    try:
        return json.dumps(metadata, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint metadata must be JSON-serializable: {error}") from error


def _corrupt(row: Sequence[Any], detail: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(row[_THREAD], row[_NS], row[_ID], detail)


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


def _chunks(items: Sequence[T], size: int = MAX_KEYS) -> Iterator[list[T]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _why(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
