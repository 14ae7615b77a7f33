"""`Inline`: a cheap node or routing function that runs where it is called, under ``invoke`` and ``ainvoke`` alike.

LangGraph runs a plain sync function given as a node or a branch on the event loop's default executor under
``ainvoke`` (a thread hop per call, twice per turn for the routing alone), and a ``RunnableLambda`` opens a
callback run for each call. A routing decision or a rejection costs microseconds: wrapped in `Inline` it is
called directly, as LangGraph's own edges are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, ensure_config


class Inline(Runnable[Any, Any]):
    """``fn(input, config)`` as a ``Runnable`` whose async path is ``afn`` or, without one, ``fn`` called directly:
    then ``fn`` must be CPU work that never blocks (no I/O, no locks held long), as it runs on the event loop."""

    def __init__(
        self,
        fn: Callable[[Any, RunnableConfig], Any],
        afn: Callable[[Any, RunnableConfig], Awaitable[Any]] | None = None,
        *,
        name: str | None = None,
    ):
        self.fn = fn
        self.afn = afn
        self.name = name or getattr(fn, "__name__", None)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.fn(input, ensure_config(config))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.afn is not None:
            return await self.afn(input, ensure_config(config))
        return self.fn(input, ensure_config(config))
