"""Reading threads back: status, history, pending tool calls (``ironloop threads``, ``history``, workers).

Everything here reads a checkpointer through LangGraph's public state API (`StateSnapshot`), never SQL (the
list of threads is `checkpoints.threads`). `state_reader` gives an agent of the right shape to read any ironloop
thread with: every agent `build_agent` makes has the same nodes, whatever its model and tools, and this one can
never run.

Status comes from LangGraph's own view of the latest checkpoint (`StateSnapshot`): nothing left to run is
*finished*; a task that raised is *failed*; a call paused for a human's decision is *waiting for approval*;
anything else left to run (a crash, Ctrl-C, a lost database) is *interrupted* and can be resumed. A thread whose
latest checkpoint cannot be decoded is *corrupt*; its history still shows every checkpoint that can be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ironloop.checkpoints.errors import CorruptCheckpointError
from ironloop.graph.agent import build_agent
from ironloop.tools.approval import is_approval_request
from ironloop.tools.idempotency import MemoryIdempotencyStore
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Interrupt, StateSnapshot

FINISHED, INTERRUPTED, FAILED, NOT_STARTED, CORRUPT = "finished", "interrupted", "failed", "not started", "corrupt"
WAITING_FOR_APPROVAL = "waiting for approval"


class _ReadOnlyModel(BaseChatModel):
    """The model of `state_reader`'s agent: asked, it refuses (that agent only reads state)."""

    @property
    def _llm_type(self) -> str:
        return "ironloop-read-only"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError("this agent only reads threads' state; it never calls a model")


def state_reader(checkpointer: BaseCheckpointSaver) -> CompiledStateGraph:
    """An agent with no tools and a model that refuses, for ``get_state`` / ``get_state_history`` on
    ``checkpointer``'s threads."""
    return build_agent(
        _ReadOnlyModel(),
        [],
        checkpointer=checkpointer,
        idempotency_store=MemoryIdempotencyStore(),
        task_budget=None,
        credentials=None,
        telemetry=False,
    )


def status_of(snapshot: StateSnapshot) -> str:
    if snapshot.created_at is None:  # no checkpoint at all
        return NOT_STARTED
    # A task that finished but whose step was never checkpointed (the process stopped right after it) shows
    # in ``tasks`` but not in ``next``: the thread is not finished until its results are applied.
    if not snapshot.next and not snapshot.tasks:
        return FINISHED
    if any(task.error for task in snapshot.tasks):
        return FAILED
    if pending_approvals(snapshot):
        return WAITING_FOR_APPROVAL
    return INTERRUPTED


def pending_approvals(snapshot: StateSnapshot) -> list[Interrupt]:
    """The approval requests the thread is paused on (one per waiting call)."""
    return [i for i in snapshot.interrupts if is_approval_request(i.value)]


def failure_of(snapshot: StateSnapshot) -> str | None:
    for task in snapshot.tasks:
        if task.error:
            return f"{task.name}: {task.error}"
    return None


def pending_tool_calls(snapshot: StateSnapshot) -> list[str]:
    """Calls of the last model message that have no observation yet (what a resume would run)."""
    messages = snapshot.values.get("messages", []) if isinstance(snapshot.values, dict) else []
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return [f"{c['name']}[{c['id']}]" for c in message.tool_calls if c["id"] not in answered]
    return []


@dataclass(frozen=True)
class HistoryRow:
    checkpoint_id: str
    step: int
    node: str
    """The node(s) whose results this checkpoint holds (``input`` for the first)."""
    created_at: str
    """ISO 8601, with its UTC offset (as LangGraph records it)."""
    next: tuple[str, ...]
    pending: list[str]
    problem: str | None = None
    """Why the checkpoint cannot be read (it is corrupt); the fields above are then unknown."""


def history(agent: Any, thread_id: str) -> list[HistoryRow]:
    """The thread's checkpoints, oldest first; a corrupt one is a row with its `problem`."""
    snapshots = readable_history(agent, {"configurable": {"thread_id": thread_id}})[::-1]
    rows = []
    previous_next: tuple[str, ...] = ()
    for snapshot in snapshots:
        if isinstance(snapshot, CorruptCheckpointError):
            rows.append(HistoryRow(snapshot.checkpoint_id, -1, "?", "-", (), [], problem=snapshot.detail))
            previous_next = ()
            continue
        metadata = snapshot.metadata or {}
        node = _ran(previous_next) if previous_next else str(metadata.get("source", "input"))
        rows.append(
            HistoryRow(
                checkpoint_id=snapshot.config["configurable"]["checkpoint_id"],
                step=int(metadata.get("step", -1)),
                node=node,
                created_at=snapshot.created_at or "-",
                next=snapshot.next,
                pending=pending_tool_calls(snapshot),
            )
        )
        previous_next = snapshot.next
    return rows


def readable_history(agent: Any, config: dict[str, Any]) -> list[StateSnapshot | CorruptCheckpointError]:
    """The thread's snapshots newest first, each checkpoint that cannot be decoded standing as its error.

    LangGraph stops listing at the first corrupt checkpoint; then they are read one at a time, past each one.
    """
    try:
        return list(agent.get_state_history(config))
    except CorruptCheckpointError:
        pass
    found: list[StateSnapshot | CorruptCheckpointError] = []
    before: dict[str, Any] | None = None
    while True:
        try:
            page = list(agent.get_state_history(config, before=before, limit=1))
        except CorruptCheckpointError as error:
            found.append(error)
            before = {"configurable": {**config["configurable"], "checkpoint_id": error.checkpoint_id}}
            continue
        if not page:
            return found
        found.append(page[0])
        before = page[0].config


def _ran(nodes: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node] = counts.get(node, 0) + 1
    return ", ".join(f"{n}×{c}" if c > 1 else n for n, c in counts.items())
