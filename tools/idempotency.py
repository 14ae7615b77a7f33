"""Idempotency keys and the ledger of side-effect calls: what makes a write tool run exactly once.

Every call of a ``side_effect`` tool gets a key derived from (thread id, logical checkpoint namespace, tool
call id): the same on every retry and after any resume or fork, different for every logical call. A tool
reads it with `current_idempotency_key()` (HTTP tools send it as the ``Idempotency-Key`` header).

The ledger (`IdempotencyStore`) records each key: *started* before the first attempt, then *completed* with
the result, *failed*, or *unknown* (the outcome could not be learned). It must be durable for the guarantee to
survive a crash: `checkpoints.idempotency.SQLIdempotencyStore` keeps it in the checkpoint database.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

_current_key: ContextVar[str | None] = ContextVar("ironloop_idempotency_key", default=None)


def current_idempotency_key() -> str:
    """The idempotency key of the side-effect call running in this context (sync or async tool)."""
    key = _current_key.get()
    if key is None:
        raise RuntimeError("no idempotency key here: only tools with ToolPolicy(side_effect=True) have one")
    return key


@contextmanager
def using_idempotency_key(key: str) -> Iterator[str]:
    """Make ``key`` the `current_idempotency_key` of this context (the call's attempts) until the block ends."""
    token = _current_key.set(key)
    try:
        yield key
    finally:
        _current_key.reset(token)


def logical_namespace(checkpoint_ns: str) -> str:
    """The checkpoint namespace without task ids (``"tools:1f2e…"`` → ``"tools"``): stable across resumes."""
    return "|".join(part.split(":", 1)[0] for part in checkpoint_ns.split("|")) if checkpoint_ns else ""


def idempotency_key_for(thread_id: str | None, checkpoint_ns: str, tool_call_id: str) -> str:
    digest = hashlib.sha256(f"{thread_id or ''}\x1f{checkpoint_ns}\x1f{tool_call_id}".encode()).hexdigest()
    return f"ik_{digest[:40]}"


class KeyStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class KeyEntry:
    key: str
    tool: str
    tool_call_id: str
    status: KeyStatus
    thread_id: str | None = None
    checkpoint_ns: str = ""
    result: str | None = None
    """The observation content recorded when the call completed (or failed); while it is *started*, what the
    policy's ``snapshot`` recorded before the first attempt (JSON), if it has one."""
    fresh: bool = False
    """True when `IdempotencyStore.begin` created this entry just now (nothing was attempted before)."""


class IdempotencyStore(Protocol):
    def begin(self, entry: KeyEntry) -> KeyEntry:
        """Record ``entry`` as started unless the key exists; return the stored entry (``fresh`` if new)."""
        ...

    def finish(self, key: str, status: KeyStatus, result: str | None) -> None:
        """Record how the call ended. Must be durable before returning."""
        ...

    def get(self, key: str) -> KeyEntry | None: ...


class MemoryIdempotencyStore:
    """A per-process ledger: exactly-once across retries, but not across a crash. For tests and scripts."""

    def __init__(self) -> None:
        self._entries: dict[str, KeyEntry] = {}
        self._lock = threading.Lock()

    def begin(self, entry: KeyEntry) -> KeyEntry:
        with self._lock:
            if entry.key in self._entries:
                return self._entries[entry.key]
            self._entries[entry.key] = replace(entry, status=KeyStatus.STARTED, fresh=False)
            return replace(entry, status=KeyStatus.STARTED, fresh=True)

    def finish(self, key: str, status: KeyStatus, result: str | None) -> None:
        with self._lock:
            self._entries[key] = replace(self._entries[key], status=status, result=result)

    def get(self, key: str) -> KeyEntry | None:
        with self._lock:
            return self._entries.get(key)


class Reconciled(StrEnum):
    """What a reconcile function learned about a call whose outcome was unknown."""

    HAPPENED = "happened"
    NOT_HAPPENED = "not_happened"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reconciliation:
    verdict: Reconciled
    result: str | None = None
    """When it happened: the result to give the model (e.g. the charge the service recorded)."""


Reconcile = Callable[..., Awaitable[Reconciliation] | Reconciliation]
"""``reconcile(idempotency_key, args)``: ask the service whether the action happened; with a policy's
``snapshot``, ``reconcile(idempotency_key, args, before)``, ``before`` being what the snapshot recorded before the
first attempt (``None`` if it could not be kept). Sync or async; a sync one runs on a tool thread. It must return a
`Reconciliation`; anything else, or an exception, leaves the outcome unknown, and the record says why."""

Snapshot = Callable[[str, dict[str, Any]], Awaitable[Any] | Any]
"""``snapshot(idempotency_key, args)``: the state the call is about to change, read before its first attempt (a
JSON value: it is kept in the ledger, so a resumed call has it too). For a service that knows nothing of
idempotency keys, it lets ``reconcile`` tell "it happened" from "it was already so"."""
