"""The tracer and meter providers ironloop reports to: the program's own where it installed one, else SDK ones
exporting over OTLP/HTTP, configured the standard way (``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_METRIC_EXPORT_INTERVAL``...) and flushed when the process exits."""

from __future__ import annotations

import atexit

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_SERVICE_NAME = "ironloop"


def resource() -> Resource:
    """The environment's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), named ``ironloop`` when
    it names no service."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return found


def tracer_provider() -> trace.TracerProvider:
    """The program's tracer provider if it set one (``trace.set_tracer_provider``), else an OTLP/HTTP one."""
    own = trace.get_tracer_provider()
    if not isinstance(own, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return own
    made = TracerProvider(resource=resource())
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    atexit.register(made.shutdown)  # registered after the meter provider's: runs first (spans, then metrics)
    return made


def meter_provider() -> metrics.MeterProvider:
    """The program's meter provider if it set one (``metrics.set_meter_provider``), else an OTLP/HTTP one."""
    own = metrics.get_meter_provider()
    if isinstance(own, MeterProvider):
        return own
    made = MeterProvider(resource=resource(), metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    atexit.register(made.shutdown)
    return made
