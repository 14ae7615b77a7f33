"""ironloop's per-call tool runtime: policies, the error tree, the runner, the built-in tools."""

from tools.errors import (
    InvalidToolCallError,
    PermanentToolError,
    ToolError,
    ToolTimeoutError,
    TransientToolError,
    is_transient,
)
from tools.policy import DEFAULT_POLICY, ToolPolicy
from tools.records import Attempt, AttemptOutcome, CallListener, CallOutcome, CallRecord
from tools.runner import ToolCallRunner
from tools.sandbox import (
    RUN_PYTHON_POLICY,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailableError,
    make_run_python_tool,
    run_python,
)

__all__ = [
    "DEFAULT_POLICY",
    "RUN_PYTHON_POLICY",
    "Attempt",
    "AttemptOutcome",
    "CallListener",
    "CallOutcome",
    "CallRecord",
    "InvalidToolCallError",
    "PermanentToolError",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailableError",
    "ToolCallRunner",
    "ToolError",
    "ToolPolicy",
    "ToolTimeoutError",
    "TransientToolError",
    "is_transient",
    "make_run_python_tool",
    "run_python",
]
