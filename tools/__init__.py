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

__all__ = [
    "DEFAULT_POLICY",
    "Attempt",
    "AttemptOutcome",
    "CallListener",
    "CallOutcome",
    "CallRecord",
    "InvalidToolCallError",
    "PermanentToolError",
    "ToolCallRunner",
    "ToolError",
    "ToolPolicy",
    "ToolTimeoutError",
    "TransientToolError",
    "is_transient",
]
