"""Calling the model as a remote procedure: retries under a `ModelPolicy`, then fallback models.

Model endpoints fail like tools do (429 with ``Retry-After``, 5xx, resets, timeouts). The model node asks
the primary model under its policy; when that is exhausted (or the error is permanent) it asks each fallback
model in turn. If all fail it raises `ModelUnavailableError`: the run stops at its last checkpoint, intact and
resumable. Each failed attempt is announced on the custom stream as a ``model_attempt`` event.

Give ``ChatOpenAI`` ``max_retries=0`` so this policy is the only retry layer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ironloop.tools.errors import ModelUnavailableError, describe, error_class
from ironloop.tools.policy import CallPolicy
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from tenacity import RetryCallState


@dataclass(frozen=True, kw_only=True)
class ModelPolicy(CallPolicy):
    """Retry settings for the model endpoint, kept apart from tool policies (a model call is slow and costly)."""

    timeout_s: float | None = 120.0
    max_attempts: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    deadline_s: float | None = 300.0


DEFAULT_MODEL_POLICY = ModelPolicy()


class ModelCallSpan(Protocol):
    """How one model's answer (or failure) to one request is reported (`observability.telemetry.ChatSpan`)."""

    def finished(self, message: AIMessage, attempts: int) -> None: ...

    def failed(self, error: BaseException, attempts: int) -> None: ...


class ModelObserver(Protocol):
    """Starts the report of a request to the ``index``-th model (0: the primary, then the fallbacks)."""

    def start(self, index: int, config: RunnableConfig) -> ModelCallSpan: ...


class ModelCaller:
    """Asks the model (then its fallbacks) for the next message, under a `ModelPolicy`."""

    def __init__(
        self,
        models: Sequence[tuple[str, Runnable]],
        policy: ModelPolicy,
        rng: random.Random | None = None,
        observer: ModelObserver | None = None,
    ):
        if not models:
            raise ValueError("ModelCaller needs at least one model")
        self.models = list(models)
        self.policy = policy
        self.rng = rng or random.Random()
        self.observer = observer

    def invoke(self, messages: list[AnyMessage], config: RunnableConfig) -> AIMessage:
        """Sync path: the attempt timeout is left to the model client's own (``ChatOpenAI(timeout=...)``)."""
        failures: list[str] = []
        for index, (name, model) in enumerate(self.models):
            retrying = self.policy.retrying_sync(deadline_at=self.policy.deadline_from_now(), rng=self.rng).copy(
                before_sleep=self._announcer(name)
            )
            span = self.observer.start(index, config) if self.observer is not None else None
            try:
                for attempt in retrying:
                    with attempt:
                        message = model.invoke(messages, config)
            except Exception as error:
                failures.append(self._failed(name, error, retrying.statistics, span))
            else:
                return self._answered(message, retrying.statistics, span)
        raise ModelUnavailableError(self._summary(failures))

    async def ainvoke(self, messages: list[AnyMessage], config: RunnableConfig) -> AIMessage:
        failures: list[str] = []
        for index, (name, model) in enumerate(self.models):
            deadline_at = self.policy.deadline_from_now()
            span = self.observer.start(index, config) if self.observer is not None else None
            first_error: Exception | None = None
            if index == 0:  # the primary's first attempt runs outside tenacity: it usually answers
                try:
                    message = await self._attempt(model, messages, config, deadline_at, 0)
                except Exception as error:
                    first_error = error
                else:
                    return self._answered(message, {"attempt_number": 1}, span)
            retrying = self.policy.retrying(deadline_at=deadline_at, rng=self.rng).copy(
                before_sleep=self._announcer(name)
            )
            timed_out = int(isinstance(first_error, TimeoutError))
            try:
                async for attempt in retrying:
                    with attempt:
                        if first_error is not None:  # tenacity takes it as attempt 1's outcome
                            replayed, first_error = first_error, None
                            raise replayed
                        try:
                            message = await self._attempt(model, messages, config, deadline_at, timed_out)
                        except TimeoutError:
                            timed_out += 1
                            raise
            except Exception as error:
                failures.append(self._failed(name, error, retrying.statistics, span))
            else:
                return self._answered(message, retrying.statistics, span)
        raise ModelUnavailableError(self._summary(failures))

    async def _attempt(
        self,
        model: Runnable,
        messages: list[AnyMessage],
        config: RunnableConfig,
        deadline_at: float | None,
        timed_out: int,
    ) -> AIMessage:
        async with asyncio.timeout(self.policy.attempt_timeout(deadline_at, timed_out)):
            message = await model.ainvoke(messages, config)
        return cast(AIMessage, message)  # or the structured answer of `graph.structured`

    def _announcer(self, name: str) -> Any:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            _emit(
                {
                    "event": "model_attempt",
                    "model": name,
                    "number": state.attempt_number,
                    "outcome": "error",
                    "error_class": error_class(error) if error else None,
                    "error": describe(error) if error else None,
                    "retry_in_s": round(state.upcoming_sleep, 3),
                }
            )

        return before_sleep

    @staticmethod
    def _answered(message: AIMessage, statistics: dict[str, Any], span: ModelCallSpan | None) -> AIMessage:
        if span is not None:
            span.finished(message, statistics.get("attempt_number", 1))
        return message

    def _failed(self, name: str, error: BaseException, statistics: dict[str, Any], span: ModelCallSpan | None) -> str:
        attempts = statistics.get("attempt_number", 1)
        if span is not None:
            span.failed(error, attempts)
        _emit({"event": "model_failed", "model": name, "attempts": attempts, "error": describe(error)})
        return f"{name}: {describe(error)} (after {attempts} attempt{'s' if attempts != 1 else ''})"

    @staticmethod
    def _summary(failures: list[str]) -> str:
        return "the model endpoint failed: " + "; then ".join(failures)


def _emit(event: dict[str, Any]) -> None:
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph
        return
    writer({k: v for k, v in event.items() if v is not None})


def model_name(model: Any) -> str:
    """A readable name for a chat model: its model id, and its endpoint when it has one."""
    name = type(model).__name__
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            name = value
            break
    endpoint = getattr(model, "openai_api_base", None)
    return f"{name} at {endpoint}" if endpoint else name
