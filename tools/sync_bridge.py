"""The per-call runtime under a synchronous ``invoke``: the async layers on one event-loop thread per runner.

The runtime's layers wait asynchronously (timeouts, back-off, hedges, rate-limit slots), and a timeout needs
something it can stop waiting for. So a sync ``wrap_tool_call`` hook runs the same stack on the runner's own
event loop (`tools.loop_thread.LoopThread`: a daemon thread, started on first use) and blocks its caller until
the call's observation is ready; the sync tool itself runs on a `tools.threads.ToolThreads` thread, which a
timeout abandons. The caller's context (LangGraph's config, so ``interrupt()`` and the stream writer work)
travels with the coroutine.

A tool that has only an async path (an MCP tool, ``@tool async def``) cannot be run by ``ToolNode``'s sync
execute; `AsyncOnlyTool` gives it a sync ``invoke`` that runs its coroutine on the same loop.
"""

from __future__ import annotations

from typing import Any

from ironloop.tools.delegating import DelegatingTool
from ironloop.tools.loop_thread import LoopThread
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import PrivateAttr


def is_async_only(tool: BaseTool) -> bool:
    """True for a ``StructuredTool`` made from a coroutine alone: its sync ``invoke`` raises."""
    return isinstance(tool, StructuredTool) and tool.func is None and tool.coroutine is not None


class AsyncOnlyTool(DelegatingTool):
    """An async-only tool whose sync ``invoke`` runs its ``ainvoke`` on a `LoopThread` (for ``ToolNode``'s sync
    path, which calls ``invoke``)."""

    _loop: LoopThread = PrivateAttr()

    def __init__(self, tool: BaseTool, loop: LoopThread):
        super().__init__(tool)
        self._loop = loop

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._loop.run(self.tool.ainvoke(input, config, **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.tool.ainvoke(input, config, **kwargs)
