"""Log output: the terminal's text lines (default) or one JSON object per line (``--log-format json``).

JSON lines (python-json-logger) carry ``time``, ``level``, ``logger``, ``message`` and, when known, the current
``trace_id`` and ``span_id`` (OpenTelemetry) and the ``run_id``, ``tenant`` and ``agent`` of the run the line is
about: a run binds them (bind_run) in the task that starts it, and the run's own task inherits them.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
_RUN: ContextVar[tuple[str, str, str] | None] = ContextVar("agentstream_log_run", default=None)
"""(run id, tenant, agent) of the run the current task works for."""


def bind_run(run_id: str, tenant: str, agent: str) -> None:
    """Log lines from here on in this task (and tasks it starts) are about this run."""
    _RUN.set((run_id, tenant, agent))


class ContextFilter(logging.Filter):
    """Adds trace_id, span_id, run_id, tenant and agent to a record when the current context knows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        run = _RUN.get()
        if run is not None:
            record.run_id, record.tenant, record.agent = run
        return True


def json_formatter(static: dict[str, object] | None = None) -> logging.Formatter:
    """The JSON line formatter (``static``: fields every line carries, e.g. the worker number)."""
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields=static or {},
        json_ensure_ascii=False,
    )


CHATTY_HTTP_LOGGERS = ("httpx", "httpx2")
"""Loggers that write a line per HTTP request at INFO (the LLM and MCP clients' HTTP libraries)."""


def configure_logging(
    level: str,
    log_format: str = "text",
    *,
    worker: int | None = None,
    pid: int | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up the root logger once for the process: level, format, and the context filter on its handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        static: dict[str, object] = {} if worker is None else {"worker": worker, "pid": pid}
        handler.setFormatter(json_formatter(static))
    else:
        who = f"[worker {worker} pid {pid}] " if worker is not None else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP clients log every request at INFO: one more line per LLM call than the run's own, formatted
    # and written on the event loop. Kept for --log-level debug; at any other level only their warnings.
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in CHATTY_HTTP_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
