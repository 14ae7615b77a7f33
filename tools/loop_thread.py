"""One long-lived event loop on a daemon thread, for sync code that must run a coroutine to completion.

``invoke`` runs each ``tools`` task on LangGraph's thread pool, but the call's runtime (timeouts, hedges, retries)
is asynchronous. Starting an event loop per task (``asyncio.run``) costs milliseconds and loses whatever the loop
keeps warm (HTTP connection pools, `tools.http.LoopClients`). `LoopThread.run` hands the coroutine to one loop
that lives as long as the process instead, with the caller's context variables (LangGraph's config, the stream
writer, ``interrupt``), and blocks until it is done.

The thread is a daemon and its loop is stopped at exit, so a coroutine still waiting (a hung tool) never keeps
the process alive. After a ``fork`` the child starts its own loop on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running on its own daemon thread, started on first use."""

    def __init__(self, name: str = "ironloop-loop"):
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if there is none in this process)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop, in a copy of the caller's context, and return its result (or raise).

        From a thread whose own event loop is running (blocking it would stall that loop, or deadlock on this
        one), the coroutine runs on a private loop on a new thread instead."""
        if _loop_running_here():
            return _run_on_new_thread(coro)
        loop = self.loop()
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            if not done.set_running_or_notify_cancel():
                coro.close()
                return
            task = loop.create_task(coro, context=context)
            started.append(task)
            task.add_done_callback(lambda t: _settle(t, done))

        loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except BaseException:
            if not done.done():  # the caller was interrupted (KeyboardInterrupt): stop the coroutine too
                done.cancel()
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
            raise

    def stop(self) -> None:
        """Stop the loop (at exit); coroutines still waiting are dropped with it."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and self._pid == os.getpid() and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)


def _settle(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.set_exception(asyncio.CancelledError())
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_on_new_thread(coro: Coroutine[Any, Any, T]) -> T:
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["result"] = context.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="ironloop-sync-bridge", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


SHARED_LOOP = LoopThread()
"""The process's loop for sync paths (`graph.tool_node.PolicyToolNode.invoke`)."""

atexit.register(SHARED_LOOP.stop)
