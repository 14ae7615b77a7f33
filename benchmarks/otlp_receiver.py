"""A small real OTLP/HTTP receiver (for the tracing-overhead benchmark and the tests): decodes the protobuf export
requests OpenTelemetry's exporters POST to ``/v1/traces`` and ``/v1/metrics`` (gzip or not) and keeps the spans
and data points, on 127.0.0.1 (a port from the OS). Needs ``ironloop[otel]``."""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str, dict[str, Any]]]
    error: bool
    start_ns: int
    end_ns: int
    resource: dict[str, Any]


@dataclass
class Point:
    metric: str
    attributes: dict[str, Any]
    value: float
    """A sum's or gauge's value, a histogram's count."""


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    links = [
                        (link.trace_id.hex(), link.span_id.hex(), {a.key: value_of(a.value) for a in link.attributes})
                        for link in span.links
                    ]
                    self.spans.append(
                        Span(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {a.key: value_of(a.value) for a in span.attributes},
                            links,
                            span.status.code == 2,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            resource,
                        )
                    )

    def add_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        attributes = {a.key: value_of(a.value) for a in point.attributes}
                        if kind == "histogram":
                            value: float = point.count
                        else:
                            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                        self.points.append(Point(metric.name, attributes, value))


class OTLPReceiver:
    """``with OTLPReceiver() as receiver:`` ... ``receiver.url`` is the OTLP endpoint; ``receiver.received``."""

    def __init__(self) -> None:
        received = self.received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with received.lock:
                    received.raw.append(body)
                    if self.path == "/v1/traces":
                        received.add_traces(body)
                    elif self.path == "/v1/metrics":
                        received.add_metrics(body)
                    else:
                        self.send_response(404)
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def otlp_telemetry(receiver: OTLPReceiver) -> Iterator[tuple[Any, Callable[[], None]]]:
    """A `Telemetry` exporting over OTLP/HTTP to ``receiver`` (spans at once, metrics on ``flush()``)."""
    from ironloop.observability.telemetry import Telemetry
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics"), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])

    def flush() -> None:
        tracer_provider.force_flush()
        meter_provider.force_flush()

    try:
        yield Telemetry(tracer_provider, meter_provider), flush
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
