"""How the pieces around one tool call compose: each is a layer that wraps the step it is handed.

A layer has one job and one method, like a ``ToolNode`` ``awrap_tool_call`` hook::

    async def __call__(self, call: CallContext, proceed: Step) -> ToolMessage | Command

It may answer without calling ``proceed`` (an approval gate that was told no), change what it hands on
(``proceed(call.but(...))``: edited arguments, a tool bound to its secrets), or look at what comes back (wrap
untrusted output, record the outcome in a ledger). `chain` stacks layers around an innermost step;
`tools.runner.ToolCallRunner` is that stack. The same shape serves one attempt (`tools.attempts`), with an
`~tools.attempts.AttemptContext` in place of the `CallContext`.

Nothing here is asynchronous by nature except the waiting: a layer's decisions live in plain methods, so a
synchronous stack can reuse them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ironloop.tools.budget import RunBudget
from ironloop.tools.events import CallEvents
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.records import CallRecord
from langchain_core.messages import ToolCall, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

Result = ToolMessage | Command
"""What a tool call ends in: ``ToolNode``'s result type."""

Execute = Callable[[ToolCallRequest], Awaitable[Result]]
"""Run the tool once for a request: what ``ToolNode`` hands an ``awrap_tool_call`` hook."""

C = TypeVar("C")


class Layer(Protocol[C]):
    """One piece around a call (or an attempt): it gets the context and the next step, and returns the result."""

    async def __call__(self, context: C, proceed: Callable[[C], Awaitable[Result]], /) -> Result: ...


def chain(layers: Sequence[Layer[C]], innermost: Callable[[C], Awaitable[Result]]) -> Callable[[C], Awaitable[Result]]:
    """One step made of ``layers`` around ``innermost``, the first layer outermost."""
    step = innermost
    for layer in reversed(layers):
        step = _wrapped(layer, step)
    return step


def _wrapped(layer: Layer[C], proceed: Callable[[C], Awaitable[Result]]) -> Callable[[C], Awaitable[Result]]:
    async def step(context: C) -> Result:
        return await layer(context, proceed)

    return step


@dataclass(frozen=True)
class CallContext:
    """One tool call on its way through the layers: what each may read, and what it may replace for the next."""

    request: ToolCallRequest
    """The call as ``ToolNode`` made it (tool call, tool, state, runtime)."""
    execute: Execute
    """Runs the tool once; a layer may hand the next one a wrapped version (secrets bound, output scrubbed)."""
    policy: ToolPolicy
    record: CallRecord
    """What the runtime remembers of the call; every layer writes to the same one."""
    events: CallEvents
    budget: RunBudget | None = None
    """The budget of the task the call belongs to (``None``: no task budgets)."""
    retry_if: Callable[[BaseException], bool] | None = None
    """Narrows which failed attempts the loop retries (the exactly-once layer retries fewer)."""

    @property
    def tool_call(self) -> ToolCall:
        return self.request.tool_call

    @property
    def name(self) -> str:
        return self.request.tool_call["name"]

    def but(self, **changes: Any) -> CallContext:
        """A copy with some fields changed, for the next layer: ``call.but(execute=bound)``."""
        return dataclasses.replace(self, **changes)


Step = Callable[[CallContext], Awaitable[Result]]
"""The rest of the stack, as a layer sees it."""
