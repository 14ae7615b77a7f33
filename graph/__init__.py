"""ironloop's agent graph: `build_agent` compiles a ReAct loop whose tool calls run under per-call policies."""

from ironloop.graph.agent import build_agent
from ironloop.graph.state import AgentState, InputState

__all__ = ["AgentState", "InputState", "build_agent"]
