"""Running one thread on a worker: under its lease, from its last checkpoint, with the decisions people recorded.

A task names a thread and, when it brings a user message, the message's id. It may be delivered twice (a worker
died before acknowledging it; Redis redelivers after its visibility timeout), so running it is idempotent: the
message is added only if the thread does not have it yet, and the run always continues the thread from its last
checkpoint. Finished tool calls are not run again (their results are checkpointed), a side effect interrupted
mid-call is settled by the idempotency ledger, and orphaned calls are repaired by the graph itself. The thread's
lease (`checkpoints.leases`) makes sure one worker runs it at a time; a run that reaches a call waiting for
approval answers it with the recorded decision (`checkpoints.decisions`), or ends there, freeing the worker and the
lease until a decision arrives (``ironloop resume THREAD --approve --enqueue``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

from ironloop.checkpoints.decisions import DecisionBook, DecisionRun
from ironloop.checkpoints.leases import LeasedSaver, Runner, ThreadLeases
from ironloop.commands import AGENT_KEY
from ironloop.distributed.agents import FACTORY_PREFIX, load_factory
from ironloop.distributed.settings import DEFAULT_AGENT, Settings
from ironloop.observability import traced_run
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import Command

MAX_PASSES = 50
"""Graph passes one task may make (a pass ends at a pause or the end); more means something loops."""


@dataclass(frozen=True)
class Outcome:
    """Where a task left its thread."""

    thread_id: str
    status: str
    """finished, waiting for approval, failed or interrupted (`cli.threads` status names)."""
    answer: str | None
    passes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkerRuntime:
    """What one worker process keeps between tasks: the saver, the leases, the decisions and the agent."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.saver = LeasedSaver.from_url(settings.db_url)
        self.saver.setup()
        runner = Runner.this_process(f"{node_name or 'worker'} pid {os.getpid()}")
        self.leases = ThreadLeases(self.saver.engine, ttl_s=settings.lease_ttl_s, runner=runner)
        self.book = DecisionBook(self.saver.engine)
        self.agent = load_factory(settings.agent)(self.saver)
        self.agent_key = "demo" if settings.agent == DEFAULT_AGENT else f"{FACTORY_PREFIX}{settings.agent}"

    def run(self, thread_id: str, message: str | None, message_id: str | None, *, lease_wait_s: float) -> Outcome:
        """Run the thread until it finishes or waits for a person. `ThreadBusyError` if another live runner holds
        it for longer than ``lease_wait_s``."""
        from ironloop.graph.status import FINISHED, status_of

        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}, "metadata": {AGENT_KEY: self.agent_key}}
        with self.leases.acquire(thread_id, wait_s=lease_wait_s), traced_run(self.agent, config):
            snapshot = self.agent.get_state(config)
            state_in: Any = None
            if message is not None and not _has_message(snapshot, message_id):
                state_in = {"messages": [HumanMessage(content=message, id=message_id)]}
            decisions = DecisionRun(self.book, thread_id)
            for passes in range(MAX_PASSES):
                if state_in is None:
                    if snapshot.created_at is None or status_of(snapshot) == FINISHED:
                        return self._outcome(thread_id, snapshot, passes)
                    waiting = _pending_approvals(snapshot)
                    if waiting:
                        checkpoint = str(snapshot.config["configurable"]["checkpoint_id"])
                        found, missing = decisions.answers(checkpoint, waiting)
                        if missing:
                            return self._outcome(thread_id, snapshot, passes)
                        state_in = Command(resume=found)
                self.agent.invoke(state_in, config, durability="sync")
                state_in = None
                snapshot = self.agent.get_state(config)
            raise RuntimeError(f"thread {thread_id!r} did not settle after {MAX_PASSES} passes of the graph")

    def _outcome(self, thread_id: str, snapshot: Any, passes: int) -> Outcome:
        from ironloop.graph.status import NOT_STARTED, status_of

        status = status_of(snapshot) if snapshot.created_at is not None else NOT_STARTED
        return Outcome(thread_id, status, final_answer(snapshot), passes)

    def close(self) -> None:
        self.saver.close()


def _has_message(snapshot: Any, message_id: str | None) -> bool:
    messages = snapshot.values.get("messages", []) if isinstance(snapshot.values, dict) else []
    return message_id is not None and any(getattr(m, "id", None) == message_id for m in messages)


def _pending_approvals(snapshot: Any) -> list[Any]:
    from ironloop.graph.status import pending_approvals

    return pending_approvals(snapshot)


def final_answer(snapshot: Any) -> str | None:
    messages = snapshot.values.get("messages", []) if isinstance(snapshot.values, dict) else []
    if messages and isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls:
        return str(messages[-1].content)
    return None


node_name = ""
"""The Celery node this process belongs to (set in the main worker process, inherited by its children)."""

_runtime: WorkerRuntime | None = None
_runtime_pid = 0
_runtime_lock = threading.Lock()


def worker_runtime() -> WorkerRuntime:
    """This process's runtime, built on first use (after a fork: anew, never the parent's connections)."""
    global _runtime, _runtime_pid
    with _runtime_lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime, _runtime_pid = WorkerRuntime(Settings.from_env()), os.getpid()
        return _runtime
