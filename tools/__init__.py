"""ironloop's per-call tool runtime: policies, the error tree, the runner, the built-in tools."""

from typing import TYPE_CHECKING

from ironloop.lazy import from_modules, lazy_exports

if TYPE_CHECKING:
    from ironloop.tools.errors import (
        InvalidToolCallError,
        IronloopError,
        PermanentToolError,
        ToolError,
        ToolTimeoutError,
        TransientToolError,
        is_transient,
    )
    from ironloop.tools.policy import DEFAULT_POLICY, ToolPolicy
    from ironloop.tools.records import Attempt, AttemptOutcome, CallListener, CallOutcome, CallRecord
    from ironloop.tools.runner import ToolCallRunner
    from ironloop.tools.sandbox import (
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
    "IronloopError",
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    from_modules(
        {
            "ironloop.tools.errors": (
                "InvalidToolCallError",
                "IronloopError",
                "PermanentToolError",
                "ToolError",
                "ToolTimeoutError",
                "TransientToolError",
                "is_transient",
            ),
            "ironloop.tools.policy": ("DEFAULT_POLICY", "ToolPolicy"),
            "ironloop.tools.records": ("Attempt", "AttemptOutcome", "CallListener", "CallOutcome", "CallRecord"),
            "ironloop.tools.runner": ("ToolCallRunner",),
            "ironloop.tools.sandbox": (
                "RUN_PYTHON_POLICY",
                "Sandbox",
                "SandboxLimits",
                "SandboxResult",
                "SandboxUnavailableError",
                "make_run_python_tool",
                "run_python",
            ),
        }
    ),
)
