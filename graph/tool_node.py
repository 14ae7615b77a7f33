"""The ``tools`` node: LangGraph's ``ToolNode``, with one runtime for ``invoke`` and ``ainvoke``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.prebuilt import ToolNode

T = TypeVar("T")


class PolicyToolNode(ToolNode):
    """``ToolNode`` whose sync path runs its async path, so ``invoke`` and ``ainvoke`` share one runtime.

    Timeouts need cancellation and parallel sync tools need their own threads; both exist only on the async
    path (`tools.threads`). Under ``invoke`` each call's task runs that path on a private event loop.
    (Credentials reach a tool through the ``awrap_tool_call`` hook, `tools.grants`.)
    """

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return run_coroutine_sync(self.ainvoke(input, config, **kwargs))


def run_coroutine_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even in a thread whose event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="ironloop-sync-bridge", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
