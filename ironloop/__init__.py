"""ironloop: a ReAct agent on LangGraph whose tool calls run as reliable remote procedure calls.

    from ironloop import build_agent, ToolPolicy, SQLAlchemySaver

    with SQLAlchemySaver.from_url("sqlite:///agent.db") as saver:
        agent = build_agent(model, tools, policies={"search": ToolPolicy(max_attempts=5)}, checkpointer=saver)

The names below are the public API; each is imported on first use, so ``import ironloop`` (and the
``ironloop`` command's ``--help``) stays quick. The packages under ``ironloop`` (``graph``, ``tools``,
``checkpoints``, ``cli``, ``demo``, ``benchmarks``) hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironloop.lazy import lazy_exports
from ironloop.version import __version__

_EXPORTS: dict[str, str] = {
    # the agent
    "build_agent": "ironloop.graph.agent",
    "AgentState": "ironloop.graph.state",
    "InputState": "ironloop.graph.state",
    "ModelPolicy": "ironloop.graph.model_call",
    "ModelUnavailableError": "ironloop.tools.errors",
    # one call's policy and its pieces
    "ToolPolicy": "ironloop.tools.policy",
    "DEFAULT_POLICY": "ironloop.tools.policy",
    "NO_FALLBACK": "ironloop.tools.sentinels",
    "TaskBudget": "ironloop.tools.budget",
    "RateLimit": "ironloop.tools.rate_limit",
    "CircuitBreaker": "ironloop.tools.circuit",
    "ToolCallRunner": "ironloop.tools.runner",
    # errors (the whole tree: ironloop.tools.errors)
    "IronloopError": "ironloop.tools.errors",
    "ToolError": "ironloop.tools.errors",
    "TransientToolError": "ironloop.tools.errors",
    "PermanentToolError": "ironloop.tools.errors",
    "ToolTimeoutError": "ironloop.tools.errors",
    "InvalidToolCallError": "ironloop.tools.errors",
    # exactly once
    "current_idempotency_key": "ironloop.tools.idempotency",
    "Reconciled": "ironloop.tools.idempotency",
    "Reconciliation": "ironloop.tools.idempotency",
    "Reconcile": "ironloop.tools.idempotency",
    "Snapshot": "ironloop.tools.idempotency",
    # approval and credentials
    "Approve": "ironloop.tools.approval",
    "Reject": "ironloop.tools.approval",
    "Edit": "ironloop.tools.approval",
    "Credentials": "ironloop.tools.credentials",
    "Secret": "ironloop.tools.credentials",
    # what a call leaves behind
    "CallRecord": "ironloop.tools.records",
    "Attempt": "ironloop.tools.records",
    "CallListener": "ironloop.tools.records",
    # sandboxed code
    "run_python": "ironloop.tools.sandbox",
    "make_run_python_tool": "ironloop.tools.sandbox",
    "SandboxLimits": "ironloop.tools.sandbox",
    # checkpoints
    "SQLAlchemySaver": "ironloop.checkpoints.saver",
    "CheckpointStoreError": "ironloop.checkpoints.errors",
    "DatabaseUnavailableError": "ironloop.checkpoints.errors",
}

__all__ = [
    "DEFAULT_POLICY",
    "NO_FALLBACK",
    "AgentState",
    "Approve",
    "Attempt",
    "CallListener",
    "CallRecord",
    "CheckpointStoreError",
    "CircuitBreaker",
    "Credentials",
    "DatabaseUnavailableError",
    "Edit",
    "InputState",
    "InvalidToolCallError",
    "IronloopError",
    "ModelPolicy",
    "ModelUnavailableError",
    "PermanentToolError",
    "RateLimit",
    "Reconcile",
    "Reconciled",
    "Reconciliation",
    "Reject",
    "SQLAlchemySaver",
    "SandboxLimits",
    "Secret",
    "Snapshot",
    "TaskBudget",
    "ToolCallRunner",
    "ToolError",
    "ToolPolicy",
    "ToolTimeoutError",
    "TransientToolError",
    "__version__",
    "build_agent",
    "current_idempotency_key",
    "make_run_python_tool",
    "run_python",
]

if TYPE_CHECKING:
    from ironloop.checkpoints.errors import CheckpointStoreError, DatabaseUnavailableError
    from ironloop.checkpoints.saver import SQLAlchemySaver
    from ironloop.graph.agent import build_agent
    from ironloop.graph.model_call import ModelPolicy
    from ironloop.graph.state import AgentState, InputState
    from ironloop.tools.approval import Approve, Edit, Reject
    from ironloop.tools.budget import TaskBudget
    from ironloop.tools.circuit import CircuitBreaker
    from ironloop.tools.credentials import Credentials, Secret
    from ironloop.tools.errors import (
        InvalidToolCallError,
        IronloopError,
        ModelUnavailableError,
        PermanentToolError,
        ToolError,
        ToolTimeoutError,
        TransientToolError,
    )
    from ironloop.tools.idempotency import (
        Reconcile,
        Reconciled,
        Reconciliation,
        Snapshot,
        current_idempotency_key,
    )
    from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
    from ironloop.tools.rate_limit import RateLimit
    from ironloop.tools.records import Attempt, CallListener, CallRecord
    from ironloop.tools.runner import ToolCallRunner
    from ironloop.tools.sandbox import SandboxLimits, make_run_python_tool, run_python
    from ironloop.tools.sentinels import NO_FALLBACK


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
