"""The per-call runtime under a synchronous ``invoke``: the async layers on one event-loop thread per runner.

The runtime's layers wait asynchronously (timeouts, back-off, hedges, rate-limit slots), and a timeout needs
something it can stop waiting for. So a sync ``wrap_tool_call`` hook runs the same stack on the runner's own
event loop (a daemon thread, started on first use) and blocks its caller until the call's observation is ready;
the sync tool itself runs on a `tools.threads.ToolThreads` thread, which a timeout abandons. The caller's
context (LangGraph's config, so ``interrupt()`` and the stream writer work) travels with the coroutine.

A tool that has only an async path (an MCP tool, ``@tool async def``) cannot be run by ``ToolNode``'s sync
execute; `AsyncOnlyTool` gives it a sync ``invoke`` that runs its coroutine on the same loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ironloop.tools.delegating import DelegatingTool
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import PrivateAttr

T = TypeVar("T")


class LoopThread:
    """One event loop on a daemon thread, started when first needed; `run` blocks until a coroutine is done."""

    def __init__(self, name: str = "ironloop-runner-loop"):
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child has no thread: start its own
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self.name, daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> T:
        """Run ``coro`` on the loop, in ``context`` (default: a copy of the caller's), and return its result."""
        loop = self._running_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("LoopThread.run was called from its own loop: await the coroutine instead")
        context = context if context is not None else contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(coro, context=context)

            def finished(task: asyncio.Task[T]) -> None:
                if task.cancelled():
                    done.cancel()
                elif (error := task.exception()) is not None:
                    done.set_exception(error)
                else:
                    done.set_result(task.result())

            task.add_done_callback(finished)

        loop.call_soon_threadsafe(start)
        return done.result()


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
