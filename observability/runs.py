"""The ``invoke_agent`` span of each agent run, and the link from a resumed thread's trace to the run it continues.

`RunSpans` is a LangChain callback handler (`graph.agent.build_agent` adds it to the agent's config): the root
run of the graph opens the span, its end closes it. It also learns each nested run's parent, so what happens
inside a node (a model call, a tool call) finds its run's span from the node's config, in whatever thread or
task LangGraph runs it (`parent_context`).

A run started inside `traced_run` (the command line's runs and resumes, the fleet's workers) uses that span
instead: the span's W3C ``traceparent`` goes into the run's checkpoint metadata (``otel_traceparent``), and the
next `traced_run` of the thread starts with a span link to it (read from the thread's latest checkpoint, once,
before the run: the handler itself never reads the checkpointer, as it runs on the event loop of async runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT_KEY = "otel_traceparent"
"""Checkpoint metadata: the ``traceparent`` of the run that wrote the checkpoint."""

_RUN = otel_context.create_key("ironloop-agent-run")
_propagator = TraceContextTextMapPropagator()


class RunSpans(BaseCallbackHandler):
    """Opens and ends ``invoke_agent`` spans from the graph's root run, and maps nested runs to them."""

    run_inline = True  # called in the caller's thread and context, so its current span is the parent
    ignore_llm = ignore_chat_model = ignore_retriever = ignore_agent = ignore_retry = ignore_custom_event = True

    def __init__(self, tracer: trace.Tracer, agent_name: str, checkpointer: Any = None):
        self.tracer, self.agent_name, self.checkpointer = tracer, agent_name, checkpointer
        self._parents: dict[UUID, UUID] = {}
        self._roots: dict[UUID, tuple[Span, bool]] = {}
        """Root run → its span, and whether this handler opened it (else a `traced_run` did, and ends it)."""

    # -- the callbacks ------------------------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        known = parent_run_id is not None and (parent_run_id in self._parents or parent_run_id in self._roots)
        if parent_run_id is not None and (known or kwargs.get("name") != self.agent_name):
            self._parents[run_id] = parent_run_id
            return
        around = otel_context.get_value(_RUN)
        if isinstance(around, Span):
            self._roots[run_id] = (around, False)
            return
        thread = (metadata or {}).get("thread_id")
        # No look-up of the thread's last run here: this runs inline, on the event loop of an async run, where a
        # synchronous read of the checkpointer would stall every other task (`traced_run` links runs).
        self._roots[run_id] = (self.start(thread if isinstance(thread, str) else None, link=False), True)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, error)

    def _ended(self, run_id: UUID, error: BaseException | None) -> None:
        if self._parents.pop(run_id, None) is not None:
            return
        span, owned = self._roots.pop(run_id, (None, False))
        if span is not None and owned:
            failed(span, error)
            span.end()

    # -- spans --------------------------------------------------------------------------------------------------

    def start(self, thread: str | None, parent: otel_context.Context | None = None, *, link: bool = True) -> Span:
        """An ``invoke_agent`` span (kind INTERNAL: the agent runs in process); with ``link``, linked to the
        thread's last traced run."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "langgraph",
            "gen_ai.agent.name": self.agent_name,
        }
        if thread:
            attributes["gen_ai.conversation.id"] = thread
        links: list[Link] = []
        if link and (previous := self.previous_run(thread)) is not None:
            links.append(Link(previous[0], {"ironloop.link": "continues"}))
            if previous[1] is not None:  # how long the thread stood still: an approval's wait, or a downtime
                attributes["ironloop.run.resumed_after_s"] = previous[1]
        name = f"invoke_agent {self.agent_name}"
        return self.tracer.start_span(name, parent, SpanKind.INTERNAL, attributes, links)

    def previous_run(self, thread: str | None) -> tuple[trace.SpanContext, float | None] | None:
        """The span of the run that wrote the thread's latest checkpoint, if it was traced, and the seconds since
        that checkpoint was written."""
        if not thread or self.checkpointer is None:
            return None
        latest = self.checkpointer.get_tuple({"configurable": {"thread_id": thread}})
        traceparent = (latest.metadata or {}).get(TRACEPARENT_KEY) if latest is not None else None
        if latest is None or not isinstance(traceparent, str):
            return None
        found = trace.get_current_span(_propagator.extract({"traceparent": traceparent})).get_span_context()
        if not found.is_valid:
            return None
        try:
            written = datetime.fromisoformat(str(latest.checkpoint["ts"]))
        except (KeyError, ValueError):
            return found, None
        return found, round(max(0.0, (datetime.now(UTC) - written).total_seconds()), 3)

    def parent_context(self, config: RunnableConfig | None = None) -> otel_context.Context:
        """The context of the agent run that ``config`` (a node's, else the current one) belongs to."""
        if config is None:
            try:
                from langgraph.config import get_config

                config = get_config()
            except RuntimeError:  # outside a graph: the caller's own context
                return otel_context.get_current()
        run = getattr(config.get("callbacks"), "parent_run_id", None)
        for _ in range(64):  # a run's ancestors are few; a cycle (impossible) must not hang the call
            if run is None or run in self._roots:
                break
            run = self._parents.get(run)
        if run is None or run not in self._roots:
            return otel_context.get_current()
        return trace.set_span_in_context(self._roots[run][0])

    @contextlib.contextmanager
    def traced_run(
        self, config: dict[str, Any], expected: Callable[[BaseException], bool] = lambda error: False
    ) -> Iterator[Span]:
        """One ``invoke_agent`` span around every pass of the graph inside (a command's run and its approval
        rounds); its ``traceparent`` goes into ``config``'s metadata, so the thread's checkpoints name it. An
        error ``expected`` accepts (a pause for approval) leaves the span unmarked."""
        thread = (config.get("configurable") or {}).get("thread_id")
        span = self.start(thread if isinstance(thread, str) else None, otel_context.get_current())
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, trace.set_span_in_context(span))
        config.setdefault("metadata", {})[TRACEPARENT_KEY] = carrier["traceparent"]
        token = otel_context.attach(otel_context.set_value(_RUN, span, trace.set_span_in_context(span)))
        try:
            yield span
        except BaseException as error:
            if not expected(error):
                failed(span, error)
            raise
        finally:
            otel_context.detach(token)
            span.end()


def failed(span: Span, error: BaseException | None) -> None:
    """Mark ``span`` failed by ``error`` (its class only); a pause (an interrupt) is no failure."""
    if error is None or isinstance(error, GraphBubbleUp):
        return
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR))
