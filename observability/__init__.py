"""OpenTelemetry traces and metrics of agent runs, tool calls and their attempts (the ``ironloop[otel]`` extra).

On when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
when ``$IRONLOOP_OTEL`` is true (the command line's ``--otel`` and ``otel = true`` in ``ironloop.toml`` set it for
the process, `enable`), or when the program installed its own tracer provider; off otherwise. Deciding that
imports nothing: when off, ironloop imports no OpenTelemetry module and runs exactly as without it.

    build_agent(...)                    spans and metrics when `wanted` (``telemetry=False``/``True`` forces)
    traced_run(config, checkpointer)    one ``invoke_agent`` span around several passes (the command line),
                                        linked to the trace of the run the thread continues

The spans (`observability.runs`, `observability.tool_spans`, `observability.telemetry`) follow the
OpenTelemetry GenAI semantic conventions: ``invoke_agent`` per run, ``chat`` per model call, ``execute_tool``
per tool call, and one ``attempt`` span per attempt under it. No attribute carries a tool's arguments, its
result, an error's text, an idempotency key or a credential: names, classes, counts, outcomes and times only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ironloop.observability.telemetry import Telemetry

SWITCH_ENV = "IRONLOOP_OTEL"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRUE = frozenset({"1", "true", "yes", "on"})


def enable() -> None:
    """Turn telemetry on for this process (``--otel``): agents built from now on are traced."""
    os.environ[SWITCH_ENV] = "1"


def wanted(environ: Any = None) -> bool:
    """Whether agents built now should be traced: an endpoint or the switch is set, or the program's own tracer
    provider is installed. ``OTEL_SDK_DISABLED=true`` wins over all of them."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get(SWITCH_ENV, "").strip().lower() in TRUE or any(env.get(name) for name in ENDPOINT_ENVS):
        return True
    return user_provider_set()


def user_provider_set() -> bool:
    """The program installed a tracer provider of its own (only checked if it already imported OpenTelemetry)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def agent_telemetry(choice: bool | Telemetry | None) -> Telemetry | None:
    """The telemetry an agent reports to: ``choice`` itself, the process's (`telemetry.process_telemetry`) when
    ``True`` or (``None``) when `wanted`, else ``None``."""
    if choice is False or (choice is None and not wanted()):
        return None
    if choice is None or choice is True:
        check_installed()
        from ironloop.observability.telemetry import process_telemetry

        return process_telemetry()
    return choice


def check_installed() -> None:
    """Telemetry is wanted: its packages must be there (`ImportError` saying which extra to install)."""
    import importlib.util

    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ImportError(
                "OpenTelemetry is on (an OTLP endpoint, $IRONLOOP_OTEL or --otel) but its packages are not "
                "installed: pip install 'ironloop[otel]'"
            )


def traced_run(
    agent: Any, config: dict[str, Any], expected: Callable[[BaseException], bool] = lambda error: False
) -> contextlib.AbstractContextManager[Any]:
    """One ``invoke_agent`` span around the passes of ``agent`` inside (`observability.runs.RunSpans.traced_run`:
    the thread's next run links to it), when the agent is traced; else nothing at all."""
    for handler in (getattr(agent, "config", None) or {}).get("callbacks") or ():
        if hasattr(handler, "traced_run"):
            return handler.traced_run(config, expected)
    return contextlib.nullcontext()
