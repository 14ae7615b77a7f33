"""A tool's own ``KeyboardInterrupt``, ``SystemExit`` or ``GeneratorExit`` fails its call, not the run.

Those exceptions are not ``Exception``s, so every layer lets them through, and LangChain runs an async tool in a
task of its own, from which ``KeyboardInterrupt`` and ``SystemExit`` escape the event loop itself: one tool that
calls ``sys.exit()`` (or a library that does) would end the whole run, and its siblings with it. `contain` gives
a tool functions that turn them into `ToolAbortedError` (a permanent failure: the call's error observation)
before they leave the tool's code.

A real Ctrl-C still stops the run: Python delivers SIGINT to the main thread only, where ``asyncio.run`` turns it
into the cancellation of the run (never an exception inside a tool's code), and a thread waiting for a sync
graph gets the ``KeyboardInterrupt`` outside any tool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ironloop.tools.delegating import DelegatingTool
from ironloop.tools.errors import ToolAbortedError
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool

CONTAINED = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""What tool code may raise that is not an ``Exception``, and becomes that call's error."""


def contain(tool: BaseTool) -> BaseTool:
    """A copy of ``tool`` whose code cannot end the run with a `CONTAINED` exception."""
    if isinstance(tool, StructuredTool):
        update: dict[str, Any] = {}
        if tool.func is not None:
            update["func"] = _contained_sync(tool.func)
        if tool.coroutine is not None:
            update["coroutine"] = _contained_async(tool.coroutine)
        return tool.model_copy(update=update)
    return ContainedTool(tool)


def aborted(error: BaseException) -> ToolAbortedError:
    code = f"({error.code!r})" if isinstance(error, SystemExit) and error.code is not None else ""
    return ToolAbortedError(f"the tool raised {type(error).__name__}{code}")


def _contained_sync(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps the signature LangChain inspects to inject config and callbacks
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CONTAINED as error:
            raise aborted(error) from error

    return run


def _contained_async(coroutine: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(coroutine)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await coroutine(*args, **kwargs)
        except CONTAINED as error:
            raise aborted(error) from error

    return run


class ContainedTool(DelegatingTool):
    """Any other ``BaseTool``: its calls, contained. (A subclass's own async ``_arun`` runs in LangChain's task,
    out of reach: a ``KeyboardInterrupt`` it raises still ends the loop; give such a tool a ``coroutine``.)"""

    def __init__(self, tool: BaseTool):
        super().__init__(tool)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return _contained_sync(self.tool.invoke)(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await _contained_async(self.tool.ainvoke)(input, config, **kwargs)
