"""Tracing into an in-memory exporter for the length of a test (the server's module-level tracer is swapped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentstream_server.observability import tracing


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Spans the server finishes during the test (tracing on, content capture off)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    """Finished spans whose name starts with prefix, in the order they started."""
    found = [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]
    return sorted(found, key=lambda span: span.start_time or 0)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id
