"""The RPC's span and stream metrics: one server interceptor for RunnerService.

opentelemetry-instrumentation-grpc was checked against grpc.aio server streaming and falls short here: a call
ended with ``abort_with_status`` (every error-table status) and a call the client cancelled both leave its span
UNSET with ``rpc.grpc.status_code`` 0 (OK). So this interceptor makes the span itself: it continues the caller's
W3C ``traceparent`` from the gRPC metadata (OpenTelemetry's propagator), keeps the span current while the
handler runs (the run's span is its child), and lets status.abort mark it with the real code (spans.rpc_error).
For the streaming RPCs it also keeps the live-subscriber gauge, counts events streamed by category and times
StreamingRun's first event. It is installed only when tracing or metrics are on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentstream_server.observability import metrics, tracing
from agentstream_server.transport.status import Context

_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
FLUSH_EVERY = 64
"""Events a stream counts locally before adding them to the events-streamed counter (one locked add, not 64)."""


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Traces and measures the unary-request methods of one service (health and reflection are left alone)."""

    def __init__(self, service_name: str, *, metrics_on: bool) -> None:
        self._service = service_name
        self._prefix = f"/{service_name}/"
        self._metrics = metrics_on

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.request_streaming or not method.startswith(self._prefix):
            return handler
        name = method.removeprefix(self._prefix)
        metadata = handler_call_details.invocation_metadata or ()
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(name, metadata, handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(name, metadata, handler.unary_unary),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _stream(
        self, name: str, metadata: Any, behavior: Callable[[Any, Context], AsyncIterator[Any]]
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        measured = self._metrics
        timed = measured and name == "StreamingRun"

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            first = timed
            span, token = self._start(name, metadata, context)
            if measured:
                metrics.subscriber_opened(name)
            counts: dict[str, int] = {}  # events by category, added to the counter every FLUSH_EVERY and at the end
            unflushed = 0
            try:
                async for message in behavior(request, context):
                    if first:
                        metrics.first_event(time.perf_counter() - started)
                        first = False
                    if measured:
                        category = message.category
                        counts[category] = counts.get(category, 0) + 1
                        unflushed += 1
                        if unflushed == FLUSH_EVERY:
                            metrics.events_streamed(counts)
                            counts, unflushed = {}, 0
                    yield message
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                if measured:
                    metrics.events_streamed(counts)
                    metrics.subscriber_closed(name)
                _end(span, token)

        return stream

    def _unary(
        self, name: str, metadata: Any, behavior: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def unary(request: Any, context: Context) -> Any:
            span, token = self._start(name, metadata, context)
            try:
                return await behavior(request, context)
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                _end(span, token)

        return unary

    def _start(self, name: str, metadata: Any, context: Context) -> tuple[trace.Span | None, object]:
        """The call's SERVER span, current from here on, continuing the caller's trace context."""
        tracer = tracing.tracer()
        if tracer is None:
            return None, None
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        parent = propagate.extract(carrier)
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": self._service,
            "rpc.method": name,
            "rpc.grpc.status_code": 0,
            "network.peer.address": context.peer(),
        }
        span = tracer.start_span(f"{self._service}/{name}", parent, kind=SpanKind.SERVER, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token


def _failed(span: trace.Span | None, exc: BaseException) -> None:
    if span is None:
        return
    if isinstance(exc, asyncio.CancelledError):  # the caller went away (cancel, disconnect, deadline)
        span.set_attribute("rpc.grpc.status_code", _CANCELLED)
    elif isinstance(exc, grpc.aio.AbortError):
        pass  # status.abort already set the code and reason (spans.rpc_error)
    elif isinstance(exc, Exception):
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__name__)
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.UNKNOWN.value[0])
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _end(span: trace.Span | None, token: object) -> None:
    if span is None:
        return
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]
