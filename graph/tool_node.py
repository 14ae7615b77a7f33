"""The ``tools`` node: LangGraph's ``ToolNode``, with one runtime for ``invoke`` and ``ainvoke``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.messages import ToolCall
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolRuntime

T = TypeVar("T")


class PolicyToolNode(ToolNode):
    """``ToolNode`` whose sync path runs its async path, so ``invoke`` and ``ainvoke`` share one runtime.

    Timeouts need cancellation and parallel sync tools need their own threads; both exist only on the async
    path (`tools.threads`). Under ``invoke`` each call's task runs that path on a private event loop.

    ``credential_args(tool_name)`` gives the secrets to inject into a call (`tools.runner.ToolCallRunner`). They
    are added to the arguments of the tool's invocation only, after ``ToolNode`` has stripped any the model
    wrote for injected parameters: never to the tool call in the AIMessage, so never to a checkpoint.
    """

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        credential_args: Callable[[str], Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(tools, **kwargs)
        self._credential_args = credential_args

    def _inject_tool_args(
        self, tool_call: ToolCall, tool_runtime: ToolRuntime, tool: BaseTool | None = None
    ) -> ToolCall:
        injected = super()._inject_tool_args(tool_call, tool_runtime, tool)
        secrets = self._credential_args(tool_call["name"]) if self._credential_args is not None else {}
        if not secrets:
            return injected
        return {**injected, "args": {**injected["args"], **secrets}}

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
