"""Each attempt of a call as a callback run of its own, so LangSmith (or any LangChain callback handler) shows
retries as retries.

`TraceAttempt` is one layer around each attempt (`tools.attempts`): when the call's config has callback handlers,
it opens a chain run named ``"<tool> attempt <n>"``, tagged ``ironloop:attempt``, and runs the tool's own run
inside it. A run's metadata is fixed when it starts, so the start carries what is known then (`ATTEMPT_KEYS`:
the attempt number, the wait before it, the timeout, the hedge delay, the idempotency key); how the attempt went
(outcome, error class, which try of a hedge answered, its duration) is the run's output, or its error. With no
handler configured it does nothing.

The idempotency key is a hash of the thread id, the checkpoint namespace and the tool call id (`tools.idempotency`):
it names the ledger entry and carries no secret. Arguments and results are not added here; the tool's own run
inside shows them as LangChain records them (secrets are injected arguments, which it leaves out).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ironloop.tools.attempts import AttemptContext, AttemptStep
from ironloop.tools.delegating import DelegatingTool
from ironloop.tools.steps import Execute, Result
from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langsmith.utils import tracing_is_enabled
from pydantic import PrivateAttr

ATTEMPT_TAG = "ironloop:attempt"

ATTEMPT_KEYS = (
    "ironloop.tool",
    "ironloop.tool_call_id",
    "ironloop.attempt",
    "ironloop.retry_delay_s",
    "ironloop.timeout_s",
    "ironloop.hedge_after_s",
    "ironloop.idempotency_key",
)
"""The metadata keys an attempt's run starts with (a key is left out when it does not apply)."""


class TraceAttempt:
    """The layer that opens one callback run per attempt (outermost, so it sees the attempt's recorded outcome)."""

    async def __call__(self, context: AttemptContext, proceed: AttemptStep) -> Result:
        config = _config_of(context)
        callbacks = config.get("callbacks")
        if not _listened(callbacks):
            return await proceed(context)
        manager = AsyncCallbackManager.configure(
            inheritable_callbacks=callbacks,
            inheritable_tags=config.get("tags"),
            local_tags=[ATTEMPT_TAG],
            inheritable_metadata=config.get("metadata"),
            local_metadata=start_metadata(context),
        )
        if not manager.handlers:
            return await proceed(context)
        call, attempt = context.call, context.attempt
        run = await manager.on_chain_start(
            None, {"tool": call.name, "attempt": attempt.number}, name=f"{call.name} attempt {attempt.number}"
        )
        traced = dataclasses.replace(context, call=call.but(execute=_under_run(call.execute, run.get_child())))
        try:
            result = await proceed(traced)
        except (GraphBubbleUp, asyncio.CancelledError) as error:
            await run.on_chain_error(error)
            raise
        except Exception as error:
            await run.on_chain_error(error, outputs=end_outputs(context))
            raise
        await run.on_chain_end(end_outputs(context))
        return result


def start_metadata(context: AttemptContext) -> dict[str, Any]:
    """What is known of the attempt as it starts."""
    call, attempt = context.call, context.attempt
    earlier = call.record.attempts[:-1]
    policy = call.policy
    metadata: dict[str, Any] = {
        "ironloop.tool": call.name,
        "ironloop.tool_call_id": call.record.tool_call_id,
        "ironloop.attempt": attempt.number,
        "ironloop.retry_delay_s": earlier[-1].retry_in_s if earlier else None,
        "ironloop.timeout_s": policy.attempt_timeout(context.deadline_at, context.timed_out_before),
        "ironloop.hedge_after_s": policy.hedge_delay(context.timed_out_before),
        "ironloop.idempotency_key": call.record.idempotency_key,
    }
    return {key: value for key, value in metadata.items() if value is not None}


def end_outputs(context: AttemptContext) -> dict[str, Any]:
    """How the attempt went, as its record says (`tools.attempts.RecordAttempt` filled it in)."""
    attempt = context.attempt
    outputs: dict[str, Any] = {"outcome": str(attempt.outcome), "ms": round(attempt.ms, 3)}
    for key in ("error_class", "hedge", "circuit", "rate_limited_ms"):
        value = getattr(attempt, key)
        if value is not None:
            outputs[key] = value
    if attempt.abandoned_thread:
        outputs["abandoned_thread"] = True
    return outputs


def _listened(callbacks: Any) -> bool:
    """True if some handler would see the attempt's run: one in the config, or LangSmith tracing switched on.
    (Checked before making a callback manager, which costs about a millisecond.)"""
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    return bool(handlers) or bool(tracing_is_enabled())


def _config_of(context: AttemptContext) -> RunnableConfig:
    config: RunnableConfig | None = getattr(context.call.request.runtime, "config", None)
    return config or {}


def _under_run(execute: Execute, callbacks: BaseCallbackManager) -> Execute:
    """``execute`` whose tool reports its own run under the attempt's (`CallbacksTool`)."""

    async def run(request: ToolCallRequest) -> Result:
        if request.tool is None:
            return await execute(request)
        return await execute(request.override(tool=CallbacksTool(request.tool, callbacks)))

    return run


class CallbacksTool(DelegatingTool):
    """``tool`` invoked with other callbacks (the attempt run's children), for one attempt."""

    _callbacks: BaseCallbackManager = PrivateAttr()

    def __init__(self, tool: Any, callbacks: BaseCallbackManager):
        super().__init__(tool)
        self._callbacks = callbacks

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.tool.invoke(input, {**(config or {}), "callbacks": self._callbacks}, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.tool.ainvoke(input, {**(config or {}), "callbacks": self._callbacks}, **kwargs)
