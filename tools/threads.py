"""Threads for sync tools: as many at once as there are calls, and abandonable at a timeout.

LangChain runs a sync tool's async path on the event loop's default executor, which has min(32, cores + 4)
threads (6 on a 2-core machine), so 64 parallel calls queue. `ToolThreads.offload` gives a tool an async
path that runs on a pool of its own instead, up to ``max_threads`` calls at once; its threads are reused from
call to call (starting a thread per call cost about a millisecond). A caller that stops waiting (a timeout)
leaves the thread running to completion: Python cannot kill a thread. Such threads are counted in
`ToolThreads.abandoned`, no longer count against the cap (a fresh thread may take the slot), and, being daemons,
never keep the process alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ironloop.tools.delegating import DelegatingTool
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import PrivateAttr

T = TypeVar("T")

DEFAULT_MAX_THREADS = 64

IDLE_S = 30.0
"""How long a pool thread waits for work before it leaves."""


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


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: contextvars.Context
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    abandoned: bool = False
    finished: bool = False


class ToolThreads:
    """A pool of reusable daemon threads for sync callables; at most ``max_threads`` calls run at once.

    Threads are started as calls need them and leave after ``idle_s`` without work. A call whose caller stops
    waiting (its timeout) no longer counts against ``max_threads``: its thread is abandoned to finish alone and a
    new one may take its place, so tools that hang cannot starve the pool. The abandoned thread rejoins the pool
    when its call ends, if there is room.
    """

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS, idle_s: float = IDLE_S):
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.max_threads = max_threads
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        """Threads counted against ``max_threads`` (abandoned ones are not)."""
        self._idle = 0
        """Of those, waiting for a job that no submitted job has claimed yet."""
        self._backlog = 0
        """Jobs queued while every counted thread was busy and the pool was full."""
        self._abandoned = 0
        self._names = itertools.count(1)

    @property
    def abandoned(self) -> int:
        """Threads still running whose caller stopped waiting for them."""
        with self._lock:
            return self._abandoned

    @property
    def threads(self) -> int:
        """Threads in the pool, busy or idle (abandoned ones not included)."""
        with self._lock:
            return self._workers

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on a pool thread and await it. Cancelling the await abandons the thread."""
        job = _Job(fn, args, kwargs, contextvars.copy_context())
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            elif self._workers < self.max_threads:
                self._workers += 1
                start = True
            else:
                self._backlog += 1
                start = False
        self._jobs.put(job)
        if start:
            self._start_thread()
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self._abandon(job)  # a job not yet started is cancelled with the await, and skipped
            raise

    def _start_thread(self) -> None:
        threading.Thread(target=self._serve, name=f"ironloop-tool-{next(self._names)}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # an unclaimed idle thread may leave; a claimed one waits for its job
                        self._idle -= 1
                        self._workers -= 1
                        return
                continue
            if job.future.set_running_or_notify_cancel():
                try:
                    result = job.context.run(job.fn, *job.args, **job.kwargs)
                except BaseException as exc:  # handed to the awaiting side, whatever it is
                    job.future.set_exception(exc)
                else:
                    job.future.set_result(result)
            with self._lock:
                job.finished = True
                if job.abandoned:
                    self._abandoned -= 1
                    if self._workers >= self.max_threads:  # a replacement took this thread's place
                        return
                    self._workers += 1
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            if job.finished or not job.future.running():
                return
            job.abandoned = True
            self._abandoned += 1
            self._workers -= 1
            replace = self._backlog > 0
            if replace:
                self._backlog -= 1
                self._workers += 1
        if replace:
            self._start_thread()

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
