"""Observability: OpenTelemetry traces (tracing, spans), Prometheus metrics (metrics) and JSON logs (logs).

Every module here is free of grpc and of the package's layers, so the runtime, the runs and the store may call
into it. Each recording call is a no-op (a flag check) while its signal is off: tracing is on only when the
standard ``OTEL_*`` environment variables ask for an exporter, metrics only with ``--metrics-port``.
"""
