"""Threads for sync tools: as many at once as there are calls, and abandonable at a timeout.

LangChain runs a sync tool's async path on the event loop's default executor, which has min(32, cores + 4)
threads (6 on a 2-core machine), so 64 parallel calls queue. `ToolThreads.offload` gives a tool an async
path that starts a daemon thread per call instead, capped by ``max_threads``. A caller that stops waiting
(a timeout) leaves the thread running to completion: Python cannot kill a thread. Such threads are counted
in `ToolThreads.abandoned` and, being daemons, never keep the process alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ironloop.tools.delegating import DelegatingTool
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import PrivateAttr

T = TypeVar("T")

DEFAULT_MAX_THREADS = 64


def is_sync_only(tool: BaseTool) -> bool:
    """True if the tool has no native async path (LangChain would run it on the default executor).

    For a ``BaseTool`` subclass this asks whether it implements ``_arun``, the method LangChain documents for
    subclasses to override (and checks the same way itself): there is no public flag for it.
    """
    if isinstance(tool, StructuredTool):
        return tool.coroutine is None
    return type(tool)._arun is BaseTool._arun


class ThreadedTool(DelegatingTool):
    """A sync-only ``BaseTool`` subclass whose async path runs its own ``invoke`` on a `ToolThreads` thread."""

    _threads: ToolThreads = PrivateAttr()

    def __init__(self, tool: BaseTool, threads: ToolThreads):
        super().__init__(tool)
        self._threads = threads

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.tool.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._threads.run(self.tool.invoke, input, config, **kwargs)


class ToolThreads:
    """Runs sync callables on their own daemon threads; at most ``max_threads`` run at once."""

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS):
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.max_threads = max_threads
        self._slots = threading.BoundedSemaphore(max_threads)
        self._lock = threading.Lock()
        self._abandoned = 0
        self._names = itertools.count(1)

    @property
    def abandoned(self) -> int:
        """Threads still running whose caller stopped waiting for them."""
        with self._lock:
            return self._abandoned

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on a new thread and await it. Cancelling the await abandons the thread."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def work() -> None:
            with self._slots:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = context.run(fn, *args, **kwargs)
                except BaseException as exc:  # handed to the awaiting side, whatever it is
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        threading.Thread(target=work, name=f"ironloop-tool-{next(self._names)}", daemon=True).start()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.running():
                self._mark_abandoned(future)
            raise

    def _mark_abandoned(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._abandoned += 1

        def released(_: concurrent.futures.Future[Any]) -> None:
            with self._lock:
                self._abandoned -= 1

        future.add_done_callback(released)

    def offload(self, tool: BaseTool) -> BaseTool:
        """A copy of a sync-only tool whose async path runs here; other tools are returned as they are."""
        if not is_sync_only(tool):
            return tool
        if isinstance(tool, StructuredTool):
            # StructuredTool.ainvoke goes to the default executor whenever ``coroutine`` is unset.
            func = tool.func
            assert func is not None

            @functools.wraps(func)  # keeps the signature LangChain inspects to inject config and callbacks
            async def coroutine(*args: Any, **kwargs: Any) -> Any:
                return await self.run(func, *args, **kwargs)

            return tool.model_copy(update={"coroutine": coroutine})

        return ThreadedTool(tool, self)
