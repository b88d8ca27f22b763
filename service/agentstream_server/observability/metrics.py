"""Prometheus metrics (prometheus-client): the definitions, the recording calls, and the /metrics endpoint.

Label sets are bounded: agents, models and tools come from the configuration (a tool the model made up is
``unknown``), statuses and reasons from the error table, categories from the event kinds; never a run id, a
session id or a tenant. Recording is a no-op until ``serve_metrics`` turns metrics on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

UNKNOWN_TOOL = "unknown"
"""The tool label of a call to a tool the agent does not have (the model's invention must not become a label)."""

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LLM = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_RUN = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_TOOL = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RUNS_STARTED = Counter("agentstream_runs_started", "Runs started on this replica.", ["agent"])
RUNS_FINISHED = Counter("agentstream_runs_finished", "Runs ended on this replica, by status.", ["agent", "status"])
RUNS_LIVE = Gauge("agentstream_runs_live", "Runs executing on this replica now.")
RUN_DURATION = Histogram(
    "agentstream_run_duration_seconds", "Run duration, start to terminal event.", ["agent", "status"], buckets=_RUN
)
EVENTS_STREAMED = Counter(
    "agentstream_events_streamed", "Events sent to callers (StreamingRun and SubscribeRun), by category.", ["category"]
)
TIME_TO_FIRST_EVENT = Histogram(
    "agentstream_time_to_first_event_seconds",
    "StreamingRun: from the call reaching its handler to its first event being handed to gRPC.",
    buckets=_LATENCY,
)
SUBSCRIBERS_LIVE = Gauge("agentstream_subscribers_live", "Open event streams, by RPC.", ["method"])
REJECTED_CALLS = Counter("agentstream_rejected_calls", "Calls refused with an error status, by reason.", ["reason"])
LLM_DURATION = Histogram(
    "agentstream_llm_call_duration_seconds", "LLM calls, request to end of stream.", ["model"], buckets=_LLM
)
LLM_FIRST_TOKEN = Histogram(
    "agentstream_llm_time_to_first_token_seconds", "LLM calls, request to first delta.", ["model"], buckets=_LLM
)
LLM_ERRORS = Counter("agentstream_llm_errors", "Failed LLM calls, by HTTP status or error type.", ["model", "status"])
LLM_TOKENS = Counter("agentstream_llm_tokens", "Tokens the LLM reported, by direction.", ["model", "direction"])
TOOL_DURATION = Histogram("agentstream_tool_duration_seconds", "Tool calls, by tool.", ["tool"], buckets=_TOOL)
TOOL_ERRORS = Counter("agentstream_tool_errors", "Tool calls that ended as an error result, by tool.", ["tool"])
MIRROR_LAG = Histogram(
    "agentstream_redis_mirror_lag_seconds",
    "Redis store: how long the oldest event of a mirrored batch waited before Redis held it.",
    buckets=_LAG,
)
LEASE_RENEWALS = Counter(
    "agentstream_redis_lease_renewals", "Redis store: lease renewal rounds, by outcome.", ["outcome"]
)

_enabled = False
_streamed: dict[str, Callable[[float], None]] = {}


def enabled() -> bool:
    """True once metrics are being recorded (``serve_metrics`` was called)."""
    return _enabled


def enable(on: bool = True) -> None:
    """Record (or stop recording) without serving; ``serve_metrics`` calls it. Tests may too."""
    global _enabled
    _enabled = on


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> tuple[WSGIServer, Thread]:
    """Serve /metrics on host:port (0 picks a free port) in a daemon thread and turn recording on.

    Returns prometheus-client's server (``server_port``; ``shutdown()`` stops it) and its thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    enable()
    return server, thread


def run_started(agent: str) -> None:
    """A run was admitted and started."""
    if _enabled:
        RUNS_STARTED.labels(agent).inc()
        RUNS_LIVE.inc()


def run_finished(agent: str, status: str, duration_s: float) -> None:
    """A run ended with its terminal status (``succeeded``, ``failed`` ...)."""
    if _enabled:
        RUNS_FINISHED.labels(agent, status).inc()
        RUN_DURATION.labels(agent, status).observe(duration_s)
        RUNS_LIVE.dec()


def events_streamed(counts: dict[str, int]) -> None:
    """Events went to a caller: how many, by category (the labelled children are looked up once each)."""
    for category, count in counts.items():
        inc = _streamed.get(category)
        if inc is None:
            inc = _streamed[category] = EVENTS_STREAMED.labels(category).inc
        inc(count)


def first_event(seconds: float) -> None:
    """A StreamingRun call's first event, ``seconds`` after the call reached its handler."""
    TIME_TO_FIRST_EVENT.observe(seconds)


def subscriber_opened(method: str) -> None:
    """An event stream (StreamingRun, SubscribeRun) opened."""
    SUBSCRIBERS_LIVE.labels(method).inc()


def subscriber_closed(method: str) -> None:
    """An event stream closed, however it ended."""
    SUBSCRIBERS_LIVE.labels(method).dec()


def call_rejected(reason: str) -> None:
    """A call was refused with the error table's ``reason``."""
    if _enabled:
        REJECTED_CALLS.labels(reason).inc()


def llm_call_finished(
    model: str, started: float, first_token: float | None, error: str | None, input_tokens: int, output_tokens: int
) -> None:
    """An LLM call ended (``started``/``first_token``: time.monotonic() values; ``error``: its status or None)."""
    if not _enabled:
        return
    now = time.monotonic()
    LLM_DURATION.labels(model).observe(now - started)
    if first_token is not None:
        LLM_FIRST_TOKEN.labels(model).observe(first_token - started)
    if error is not None:
        LLM_ERRORS.labels(model, error).inc()
    if input_tokens:
        LLM_TOKENS.labels(model, "input").inc(input_tokens)
    if output_tokens:
        LLM_TOKENS.labels(model, "output").inc(output_tokens)


def tool_finished(tool: str, duration_s: float, is_error: bool) -> None:
    """A tool call ended (``tool``: its name, or UNKNOWN_TOOL)."""
    if _enabled:
        TOOL_DURATION.labels(tool).observe(duration_s)
        if is_error:
            TOOL_ERRORS.labels(tool).inc()


def mirror_flushed(lag_s: float) -> None:
    """The Redis store wrote a batch of a run's events; the oldest had waited ``lag_s``."""
    if _enabled:
        MIRROR_LAG.observe(lag_s)


def leases_renewed(ok: bool) -> None:
    """One lease renewal round with Redis, successful or not."""
    if _enabled:
        LEASE_RENEWALS.labels("ok" if ok else "error").inc()
