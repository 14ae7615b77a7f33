"""The tracer, the meter and the instruments ironloop reports to, and the ``chat`` span of a model call.

One `Telemetry` per process (`process_telemetry`) unless a program builds its own from providers it holds
(a test, an application with several pipelines). `Telemetry.for_agent` gives one agent what it reports through:
the run handler (``invoke_agent``), the tool listener (``execute_tool`` and its attempts) and the model calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ironloop.observability.runs import RunSpans
from ironloop.observability.tool_spans import Instruments, ToolSpans
from ironloop.version import __version__
from langchain_core.runnables import RunnableConfig
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

SCOPE = "ironloop"


class Telemetry:
    """Where spans and metrics go: ``tracer_provider``/``meter_provider`` (default: the process's, `providers`)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ):
        if meter_provider is None or tracer_provider is None:
            from ironloop.observability import providers

            meter_provider = meter_provider or providers.meter_provider()
            tracer_provider = tracer_provider or providers.tracer_provider()
        self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter = meter_provider.get_meter(SCOPE, __version__)
        self.instruments = Instruments(meter)
        self.chat_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of GenAI client operations"
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per model call"
        )
        self.model_retries = meter.create_counter(
            "ironloop.model.retries", unit="{retry}", description="Model calls retried (429, 5xx, timeouts)"
        )

    def for_agent(
        self, name: str, checkpointer: Any, models: Sequence[Any], circuit_tools: Iterable[str] = ()
    ) -> AgentTelemetry:
        """What one agent reports through. ``models``: its chat models, primary first."""
        runs = RunSpans(self.tracer, name, checkpointer)
        return AgentTelemetry(
            runs=runs,
            tools=ToolSpans(self.tracer, self.instruments, runs, circuit_tools),
            models=ModelCalls(self, runs, [model_identity(m) for m in models]),
        )


class AgentTelemetry:
    """One agent's reporters: ``runs`` (a LangChain callback handler), ``tools`` (a `CallListener`), ``models``."""

    def __init__(self, *, runs: RunSpans, tools: ToolSpans, models: ModelCalls):
        self.runs, self.tools, self.models = runs, tools, models


def model_identity(model: Any) -> dict[str, Any]:
    """The GenAI attributes naming a chat model: provider, model id, and the server's host and port (never the
    URL's path, query or user info)."""
    name = type(model).__name__
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            name = value
            break
    provider = "openai" if hasattr(model, "openai_api_base") else type(model).__name__.lower()
    found: dict[str, Any] = {"gen_ai.provider.name": provider, "gen_ai.request.model": name}
    base = getattr(model, "openai_api_base", None)
    if isinstance(base, str) and base:
        parts = urlsplit(base)
        if parts.hostname:
            found["server.address"] = parts.hostname
        if parts.port:
            found["server.port"] = parts.port
    return found


class ModelCalls:
    """Opens the ``chat`` span of each model call (`graph.model_call.ModelCaller` asks for one per model tried)."""

    def __init__(self, telemetry: Telemetry, runs: RunSpans, identities: list[dict[str, Any]]):
        self.telemetry, self.runs, self.identities = telemetry, runs, identities

    def start(self, index: int, config: RunnableConfig | None) -> ChatSpan:
        return ChatSpan(self.telemetry, self.identities[index], self.runs.parent_context(config))


class ChatSpan:
    """One model asked for one message, its retries included: a ``chat {model}`` span (kind CLIENT)."""

    def __init__(self, telemetry: Telemetry, identity: dict[str, Any], parent: Any):
        self.telemetry, self.identity = telemetry, identity
        self.started = time.monotonic()
        self.span = telemetry.tracer.start_span(
            f"chat {identity['gen_ai.request.model']}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", **identity},
        )

    def finished(self, message: Any, attempts: int) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        response_model = (getattr(message, "response_metadata", None) or {}).get("model_name")
        attributes: dict[str, Any] = {"ironloop.model.attempts": attempts}
        for kind in ("input", "output"):
            if isinstance(usage.get(f"{kind}_tokens"), int):
                attributes[f"gen_ai.usage.{kind}_tokens"] = usage[f"{kind}_tokens"]
                self.telemetry.token_usage.record(usage[f"{kind}_tokens"], {**self._low(), "gen_ai.token.type": kind})
        if isinstance(response_model, str):
            attributes["gen_ai.response.model"] = response_model
        self.span.set_attributes(attributes)
        self._end(attempts, None)

    def failed(self, error: BaseException, attempts: int) -> None:
        kind = type(error).__name__
        self.span.set_attributes({"ironloop.model.attempts": attempts, "error.type": kind})
        self.span.set_status(Status(StatusCode.ERROR))
        self._end(attempts, kind)

    def _low(self) -> dict[str, Any]:
        return {"gen_ai.operation.name": "chat", **{k: v for k, v in self.identity.items() if k.startswith("gen_ai")}}

    def _end(self, attempts: int, error: str | None) -> None:
        labels = self._low() | ({"error.type": error} if error else {})
        self.telemetry.chat_duration.record(time.monotonic() - self.started, labels)
        if attempts > 1:
            self.telemetry.model_retries.add(attempts - 1, self._low())
        self.span.end()


_process: Telemetry | None = None
_lock = threading.Lock()


def process_telemetry() -> Telemetry:
    """The process's telemetry, made on first use from the installed or OTLP providers."""
    global _process
    with _lock:
        if _process is None:
            _process = Telemetry()
        return _process
