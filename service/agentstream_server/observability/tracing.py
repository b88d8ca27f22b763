"""OpenTelemetry tracing setup: on only when the standard ``OTEL_*`` variables ask for an exporter.

``configure_from_env`` builds the SDK's TracerProvider (resource from ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES``, sampler from ``OTEL_TRACES_SAMPLER``, batch export to the OTLP exporter the
``OTEL_EXPORTER_OTLP_*`` variables configure, or to the console with ``OTEL_TRACES_EXPORTER=console``).
Without them no provider is built, ``tracer()`` is None and every span helper in spans.py is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from agentstream_server.redact import redact_url

logger = logging.getLogger("agentstream.tracing")

INSTRUMENTATION_NAME = "agentstream"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_TRUE = ("1", "true", "yes", "on")

_tracer: trace.Tracer | None = None
_capture_content = False


def tracer() -> trace.Tracer | None:
    """The tracer spans are made with, or None while tracing is off."""
    return _tracer


def capture_content() -> bool:
    """True when prompt, completion and tool text may be recorded on spans (``--trace-content``)."""
    return _capture_content


def use_provider(provider: trace.TracerProvider | None, *, content: bool = False) -> None:
    """Trace with this provider (None: tracing off). configure_from_env calls it; tests pass an in-memory one."""
    global _tracer, _capture_content
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME) if provider is not None else None
    _capture_content = content and provider is not None


def requested(env: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for ('otlp' or 'console'), or None when tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return None
    exporters = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if exporters:
        if exporters == ["none"]:
            return None
        for name in exporters:
            if name not in ("otlp", "console", "none"):
                raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here: use otlp, console or none")
        return "otlp" if "otlp" in exporters else "console"
    return "otlp" if any(env.get(var) for var in _ENDPOINT_VARS) else None


def configure_from_env(*, content: bool = False, env: Mapping[str, str] | None = None) -> str | None:
    """Set up tracing as the ``OTEL_*`` variables say; returns a description for the start log, None when off.

    The provider also becomes OpenTelemetry's global one, so tools that make their own spans join the run's trace.
    """
    env = os.environ if env is None else env
    kind = requested(env)
    if kind is None:
        use_provider(None)
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "agentstream"}))
    provider = TracerProvider(resource=resource)
    exporter, where = _exporter(kind, env)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use_provider(provider, content=content)
    return f"{where}, service {resource.attributes.get(SERVICE_NAME)}" + ("; content recorded" if content else "")


def shutdown() -> None:
    """Flush and stop the exporter (at server shutdown); tracing is off afterwards."""
    provider = trace.get_tracer_provider()
    if _tracer is not None and isinstance(provider, TracerProvider):
        provider.shutdown()
    use_provider(None)


def _exporter(kind: str, env: Mapping[str, str]) -> tuple[SpanExporter, str]:
    if kind == "console":
        return ConsoleSpanExporter(), "console"
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "default"
    endpoint = redact_url(endpoint)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(), f"OTLP/gRPC to {endpoint}"
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(), f"OTLP/HTTP to {endpoint}"
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")
