"""One thread, one runner: a lease per thread in the checkpoint database.

A run of a thread (a worker's task, ``ironloop resume``) holds the thread's lease for the whole graph run. The
lease is a row of ``ironloop_thread_leases`` (`checkpoints.schema`): who holds it, since when, until when, and a
token. The holder renews it from a background thread every ``ttl_s / 3``. Someone else who wants the thread
waits (or backs off) while the holder lives, and takes the lease over when it has expired, or at once when the
holder was a process of this host that is gone (its pid and start time tell, so a reused pid is not mistaken
for it). Works alike on SQLite (one host), PostgreSQL and MySQL/MariaDB: every change is one conditional
statement (`checkpoints.lease_sql`). Expiry compares the machines' clocks: keep them in sync (NTP), well within
``ttl_s``.

Each acquisition gets a larger token (a fencing token). `LeasedSaver` stamps the holder and token on every
checkpoint it writes (metadata ``ironloop_writer``) and refuses to write for a lease this process can no
longer vouch for (not renewed within ``ttl_s``: a stalled holder cannot write after its successor took over),
so `writer_record` can prove from the checkpoints alone that no thread ever had two runners at once.

    ThreadLeaseError                a thread's lease could not be had or kept (a `CheckpointStoreError`)
    ├── ThreadBusyError             another live runner holds the thread (``holder`` says who, since when)
    └── LeaseLostError              this process lost the lease while running: it must stop writing
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ironloop.checkpoints import lease_sql
from ironloop.checkpoints.database import WRITE_TRANSACTION, store_error
from ironloop.checkpoints.errors import CheckpointStoreError
from ironloop.checkpoints.saver import SQLAlchemySaver
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from sqlalchemy import Engine, exc

DEFAULT_TTL_S = 30.0
"""How long a lease lasts without renewal: a holder on another host that died is replaced after this long."""

WRITER_KEY = "ironloop_writer"
"""Checkpoint metadata: ``{"holder": ..., "token": ...}`` of the lease under which the checkpoint was written."""

VOUCH_FRACTION = 0.8
"""A holder stops vouching for its lease after this fraction of ``ttl_s`` without a renewal (a margin for clock
rates and for the time a renewal takes to reach the database)."""


class ThreadLeaseError(CheckpointStoreError):
    """A thread's lease could not be had or kept."""


class ThreadBusyError(ThreadLeaseError):
    """Another live runner holds the thread."""

    def __init__(self, thread_id: str, holder: Holder):
        self.thread_id = thread_id
        self.holder = holder
        super().__init__(f"thread {thread_id!r} is being run by {holder.describe()}")


class LeaseLostError(ThreadLeaseError):
    """This process can no longer vouch for its lease on the thread (not renewed in time, or taken over)."""


@dataclass(frozen=True)
class Runner:
    """Who runs a thread: a name for people, and the host, pid and start time that tell whether it still lives."""

    name: str
    host: str
    pid: int
    pid_started: str | None

    @classmethod
    def this_process(cls, name: str | None = None) -> Runner:
        pid = os.getpid()
        return cls(name or f"{socket.gethostname()} pid {pid}", socket.gethostname(), pid, _process_start(pid))

    def columns(self) -> dict[str, object]:
        return {"holder": self.name[:255], "host": self.host[:255], "pid": self.pid, "pid_started": self.pid_started}


@dataclass(frozen=True)
class Holder:
    """A lease as stored: the runner holding it, its token, since when and until when unless renewed."""

    thread_id: str
    token: int
    runner: Runner | None
    since: datetime | None
    expires_at: datetime | None

    def describe(self) -> str:
        if self.runner is None:
            return "nobody"
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"{self.runner.name}{since}"

    def is_free(self, now: datetime) -> bool:
        return self.runner is None or self.expires_at is None or self.expires_at <= now

    def is_gone(self) -> bool:
        """The holder is a process of this host that has ended (never true for another host's process)."""
        runner = self.runner
        if runner is None or runner.pid_started is None or runner.host != socket.gethostname():
            return False
        return _process_start(runner.pid) != runner.pid_started


def _holder(row: Sequence[Any]) -> Holder:
    thread_id, token, name, host, pid, pid_started, since, expires_at = row
    runner = Runner(name, host or "", int(pid or 0), pid_started) if name is not None else None
    return Holder(thread_id, int(token), runner, since, expires_at)


class ThreadLeases:
    """Takes, renews and releases thread leases in one database (the checkpoint database's engine)."""

    def __init__(self, engine: Engine, *, ttl_s: float = DEFAULT_TTL_S, runner: Runner | None = None):
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.engine = engine
        self.ttl_s = ttl_s
        self.runner = runner or Runner.this_process()

    def holder(self, thread_id: str) -> Holder | None:
        """The thread's current lease (``None``: never leased); it may be free (``runner`` None) or expired."""
        with self._connect("reading a thread lease") as connection:
            row = connection.execute(lease_sql.read_lease(thread_id)).first()
        return _holder(row) if row is not None else None

    def holders(self, thread_ids: Sequence[str]) -> dict[str, Holder]:
        """The held, unexpired leases among ``thread_ids``."""
        if not thread_ids:
            return {}
        now = _now()
        with self._connect("reading thread leases") as connection:
            rows = connection.execute(lease_sql.read_holders(thread_ids)).all()
        held = (_holder(row) for row in rows)
        return {h.thread_id: h for h in held if not h.is_free(now) and not h.is_gone()}

    def try_acquire(self, thread_id: str) -> Lease | None:
        """The lease if it can be had now (free, expired, or its holder gone), else ``None``."""
        while True:
            current = self.holder(thread_id)
            now = _now()
            expires_at = now + timedelta(seconds=self.ttl_s)
            started = time.monotonic()
            if current is None:  # no row yet: an INSERT, which the primary key lets only one process make
                statement: Any = lease_sql.first_lease(thread_id, self.runner.columns(), now, expires_at)
                token = 1
            elif current.is_free(now) or current.is_gone():
                statement = lease_sql.take_over(thread_id, current.token, self.runner.columns(), now, expires_at)
                token = current.token + 1
            else:
                return None
            try:
                with self._connect("taking a thread lease", write=True) as connection:
                    result = connection.execute(statement)
                    changed = 1 if current is None else result.rowcount
            except CheckpointStoreError as error:
                if isinstance(error.__cause__, exc.IntegrityError):
                    continue  # someone inserted the first lease between our read and our insert: look again
                raise
            if changed == 1:
                return Lease(self, thread_id, token, started)
            # Someone else moved the token between our read and our update: look again.

    def acquire(self, thread_id: str, *, wait_s: float | None = None, poll_s: float = 0.05) -> Lease:
        """The thread's lease, waiting while a live runner holds it: at most ``wait_s`` (``None``: as long as it
        takes), then `ThreadBusyError` naming the holder."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        delay = poll_s
        while True:
            lease = self.try_acquire(thread_id)
            if lease is not None:
                return lease
            if deadline is not None and time.monotonic() >= deadline:
                holder = self.holder(thread_id)
                raise ThreadBusyError(thread_id, holder or Holder(thread_id, 0, None, None, None))
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 1.0)

    def _renew(self, lease: Lease) -> bool:
        """Extend the lease; False if it is no longer ours."""
        expires_at = _now() + timedelta(seconds=self.ttl_s)
        with self._connect("renewing a thread lease", write=True) as connection:
            return connection.execute(lease_sql.renew(lease.thread_id, lease.token, expires_at)).rowcount == 1

    def _release(self, lease: Lease) -> None:
        with self._connect("releasing a thread lease", write=True) as connection:
            connection.execute(lease_sql.release(lease.thread_id, lease.token))

    def forget(self, thread_id: str) -> None:
        """Drop a thread's lease row (when the thread itself is deleted)."""
        with self._connect("deleting a thread lease", write=True) as connection:
            connection.execute(lease_sql.forget(thread_id))

    @contextlib.contextmanager
    def _connect(self, doing: str, *, write: bool = False) -> Iterator[Any]:
        try:
            with self.engine.connect() as connection:
                if write:
                    connection = connection.execution_options(**{WRITE_TRANSACTION: True})
                with connection.begin():
                    yield connection
        except exc.SQLAlchemyError as error:
            raise store_error(error, self.engine.url, doing) from error


class Lease:
    """A held lease: renewed in the background until `release` (or the end of a ``with`` block)."""

    def __init__(self, leases: ThreadLeases, thread_id: str, token: int, started: float):
        self.leases = leases
        self.thread_id = thread_id
        self.token = token
        self._vouch_until = started + leases.ttl_s * VOUCH_FRACTION
        self._lost: str | None = None
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, name=f"ironloop-lease-{thread_id[:20]}", daemon=True)
        self._heart.start()
        _held.add(self)

    @property
    def record(self) -> dict[str, Any]:
        """What the checkpoints written under this lease carry (`WRITER_KEY`)."""
        return {"holder": self.leases.runner.name, "token": self.token}

    @property
    def valid(self) -> bool:
        return self._lost is None and time.monotonic() < self._vouch_until

    def check(self) -> None:
        """Raise `LeaseLostError` if this process can no longer vouch for the lease."""
        if self._lost is None and time.monotonic() >= self._vouch_until:
            self._lost = f"not renewed within {self.leases.ttl_s * VOUCH_FRACTION:.1f} s"
        if self._lost is not None:
            raise LeaseLostError(
                f"lost the lease on thread {self.thread_id!r} (token {self.token}): {self._lost}; another runner "
                "may have taken the thread over, so this one stops writing"
            )

    def _beat(self) -> None:
        interval = self.leases.ttl_s / 3
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                ours = self.leases._renew(self)
            except CheckpointStoreError:
                continue  # the database is away: try again; `check` fails once the lease runs out
            if not ours:
                self._lost = "another runner took it over"
                return
            self._vouch_until = started + self.leases.ttl_s * VOUCH_FRACTION

    def release(self) -> None:
        """Stop renewing and free the lease (if it is still ours); safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        _held.discard(self)
        if self._heart.is_alive() and self._heart is not threading.current_thread():
            self._heart.join(timeout=5)
        if self._lost is None:
            with contextlib.suppress(CheckpointStoreError):  # unreleased, it simply expires
                self.leases._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _HeldLeases:
    """The leases this process holds, by thread: what `LeasedSaver` checks before writing."""

    def __init__(self) -> None:
        self._by_thread: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._by_thread[lease.thread_id] = lease

    def discard(self, lease: Lease) -> None:
        with self._lock:
            if self._by_thread.get(lease.thread_id) is lease:
                del self._by_thread[lease.thread_id]

    def get(self, thread_id: str) -> Lease | None:
        return self._by_thread.get(thread_id)


_held = _HeldLeases()


def held_lease(thread_id: str) -> Lease | None:
    """The lease this process holds on ``thread_id``, if any."""
    return _held.get(thread_id)


class LeasedSaver(SQLAlchemySaver):
    """`SQLAlchemySaver` that honours thread leases: a thread this process leased is written only while the lease
    is valid (`LeaseLostError` otherwise), and its checkpoints carry the lease's writer record. Threads this
    process holds no lease on are written as usual, without a record."""

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        lease = held_lease(config["configurable"]["thread_id"])
        stamped: dict[str, Any] = {k: v for k, v in metadata.items() if k != WRITER_KEY}
        if lease is not None:
            lease.check()
            stamped[WRITER_KEY] = lease.record
        return super().put(config, checkpoint, stamped, new_versions)  # type: ignore[arg-type]

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        lease = held_lease(config["configurable"]["thread_id"])
        if lease is not None:
            lease.check()
        super().put_writes(config, writes, task_id, task_path)


@dataclass
class WriterRecord:
    """Who wrote a thread's checkpoints, in order, and whether two runners ever overlapped."""

    thread_id: str
    tokens: list[int]
    """The lease token of each checkpoint, oldest first (0: written without a lease)."""
    holders: dict[int, str]
    problems: list[str]

    @property
    def runs(self) -> int:
        """Leases (runners, one after another) that wrote to the thread."""
        return len({t for t in self.tokens if t})


def writer_record(engine: Engine, thread_id: str) -> WriterRecord:
    """Read a thread's writer record from its checkpoints. Tokens must never go down (a write from a runner
    whose successor had already written), and one token names one holder."""
    with engine.connect() as connection:
        rows = connection.execute(lease_sql.writer_records(thread_id)).all()
    tokens: list[int] = []
    holders: dict[int, str] = {}
    problems: list[str] = []
    for checkpoint_id, _created_at, metadata in rows:
        writer = (metadata or {}).get(WRITER_KEY) if isinstance(metadata, dict) else None
        token = int(writer["token"]) if isinstance(writer, dict) and "token" in writer else 0
        if tokens and token < tokens[-1]:
            problems.append(
                f"{thread_id}: checkpoint {checkpoint_id} written under lease {token} ({writer}) after one "
                f"written under lease {tokens[-1]} ({holders.get(tokens[-1])}): two runners overlapped"
            )
        if token and holders.setdefault(token, str(writer["holder"])) != str(writer["holder"]):  # type: ignore[index]
            problems.append(f"{thread_id}: lease token {token} names two holders")
        tokens.append(token)
    return WriterRecord(thread_id, tokens, holders, problems)


def _now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()[:8]
    except OSError:
        return "noboot"


def _process_start(pid: int) -> str | None:
    """A pid's start time on this boot (Linux ``/proc``), or None if it is not running (a zombie counts as
    ended); on systems without ``/proc``, whether it exists at all."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{_boot_id()}:?"
    if fields[0] in ("Z", "X"):
        return None
    return f"{_boot_id()}:{fields[19]}"
