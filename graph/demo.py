"""The offline demo agent: the scripted model, the built-in tools and their policies.

``graph`` is the module-level compiled graph that ``langgraph.json`` points at (no checkpointer: the
LangGraph server brings its own). Its ``search`` tool uses ``$IRONLOOP_SEARCH_URL``, or else starts the
bundled search service (reference fault profile) on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from graph.agent import build_agent
from graph.scenario import demo_script
from graph.scripted_model import ScriptedChatModel
from tools.builtin import BUILTIN_POLICIES, builtin_tools
from tools.credentials import Credentials
from tools.records import CallListener


def build_demo_agent(
    search_url: str | Callable[[], str] | None = None,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    listeners: Iterable[CallListener] = (),
    max_turns: int = 10,
    credentials: Credentials | None = None,
) -> CompiledStateGraph:
    return build_agent(
        ScriptedChatModel(script=demo_script),
        builtin_tools(search_url),
        policies=BUILTIN_POLICIES,
        checkpointer=checkpointer,
        listeners=listeners,
        max_turns=max_turns,
        credentials=credentials,
        name="ironloop-demo",
    )


graph = build_demo_agent()
