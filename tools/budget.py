"""Budgets per task (one user message and everything it sets off): a cap on retries and a deadline.

Per-call policies bound each call; a storm of failures across many calls could still make one task run for
minutes. `TaskBudget` bounds the task: once ``max_retries`` retries are spent no call of the task retries
again, and past ``deadline_s`` no new attempt starts, calls' deadlines shrink to fit, and the model is not
called again (the run ends with an answer saying why). Budgets live in process memory: a resumed task
starts a fresh one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState
from tenacity.stop import stop_base


@dataclass(frozen=True, kw_only=True)
class TaskBudget:
    max_retries: int | None = 50
    """Retries (attempts after the first) allowed across all calls of a task; ``None``: no cap."""
    deadline_s: float | None = 120.0
    """Wall time allowed for a task, from its first model call; ``None``: no deadline."""


@dataclass
class RunBudget:
    config: TaskBudget
    started_at: float = field(default_factory=time.monotonic)
    retries_used: int = 0
    paused_at: float | None = None
    """Set while a call of the task waits for a human: that wait does not count against the deadline."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def deadline_at(self) -> float | None:
        return self.started_at + self.config.deadline_s if self.config.deadline_s is not None else None

    def expired(self) -> bool:
        deadline = self.deadline_at
        return deadline is not None and time.monotonic() >= deadline

    def pause(self) -> None:
        """A call is waiting for a human's approval: stop the clock (parallel waits overlap; one pause)."""
        with self._lock:
            if self.paused_at is None:
                self.paused_at = time.monotonic()

    def unpause(self) -> None:
        """The human answered: the deadline moves by the time spent waiting."""
        with self._lock:
            if self.paused_at is not None:
                self.started_at += time.monotonic() - self.paused_at
                self.paused_at = None

    def take_retry(self) -> bool:
        """Spend one retry if any is left."""
        with self._lock:
            if self.config.max_retries is not None and self.retries_used >= self.config.max_retries:
                return False
            self.retries_used += 1
            return True


class Budgets:
    """The budgets of recent tasks, by task key (bounded: the oldest are forgotten)."""

    def __init__(self, config: TaskBudget, keep: int = 10_000):
        self.config = config
        self.keep = keep
        self._runs: OrderedDict[str, RunBudget] = OrderedDict()
        self._lock = threading.Lock()

    def for_task(self, key: str) -> RunBudget:
        with self._lock:
            budget = self._runs.get(key)
            if budget is None:
                budget = self._runs[key] = RunBudget(self.config)
                while len(self._runs) > self.keep:
                    self._runs.popitem(last=False)
            return budget


def task_key(thread_id: str | None, messages: Sequence[Any]) -> str:
    """A task is one user message on one thread: key it by the thread and that message's id."""
    for message in reversed(messages):
        if getattr(message, "type", None) == "human":
            return f"{thread_id or '-'}:{message.id}"
    return f"{thread_id or '-'}:"


class stop_when_budget_spent(stop_base):
    """Stop retrying when the task has no retry left; otherwise spend one (put it last in a ``|`` chain)."""

    def __init__(self, budget: RunBudget):
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self.budget.take_retry()
