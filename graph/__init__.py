"""ironloop's agent graph: `build_agent` compiles a ReAct loop whose tool calls run under per-call policies."""

from typing import TYPE_CHECKING

from ironloop.lazy import from_modules, lazy_exports

if TYPE_CHECKING:
    from ironloop.graph.agent import build_agent
    from ironloop.graph.state import AgentState, InputState

__all__ = ["AgentState", "InputState", "build_agent"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    from_modules(
        {
            "ironloop.graph.agent": ("build_agent",),
            "ironloop.graph.state": ("AgentState", "InputState"),
        }
    ),
)
