"""The ``tools`` node: LangGraph's ``ToolNode``, with one runtime for ``invoke`` and ``ainvoke``."""

from __future__ import annotations

from typing import Any

from ironloop.tools.loop_thread import SHARED_LOOP
from langchain_core.runnables import RunnableConfig
from langgraph.prebuilt import ToolNode


class PolicyToolNode(ToolNode):
    """``ToolNode`` whose sync path runs its async path, so ``invoke`` and ``ainvoke`` share one runtime.

    Timeouts need cancellation and parallel sync tools need their own threads; both exist only on the async
    path (`tools.threads`). Under ``invoke`` each call's task runs that path on the process's long-lived event
    loop thread (`tools.loop_thread`), in the task's context. (Credentials reach a tool through the
    ``awrap_tool_call`` hook, `tools.grants`.)
    """

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return SHARED_LOOP.run(self.ainvoke(input, config, **kwargs))
